"""Publishing a command by hand, exactly as given, and waiting for its reply."""

import asyncio
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from contracts import Reply


async def send_raw(
    connection: AbstractRobustConnection, *, exchange: str, routing_key: str, body: bytes, **props: Any
) -> tuple[str, Reply]:
    """Publish exactly these bytes and properties; wait for the reply on a queue of our own.

    Returns the ``message_id`` sent (a fresh one unless given) and the reply.
    """
    channel = await connection.channel()
    reply_queue = await channel.declare_queue(exclusive=True)
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_reply(message: AbstractIncomingMessage) -> None:
        await replies.put(message.body)

    await reply_queue.consume(on_reply, no_ack=True)
    message_id = props.pop("message_id", str(uuid.uuid4()))
    target = await channel.get_exchange(exchange, ensure=False) if exchange else channel.default_exchange
    await target.publish(
        aio_pika.Message(body, message_id=message_id, reply_to=reply_queue.name, **props),
        routing_key=routing_key,
    )
    async with asyncio.timeout(10):
        return message_id, Reply.model_validate_json(await replies.get())
