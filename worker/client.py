"""``OutplanClient`` for the worker's own tools and tests; producers import it from ``contracts.client``."""

import asyncio
import uuid

import aio_pika
from aio_pika.abc import AbstractConnection

from contracts import names
from contracts.client import (
    REPLY_TO,
    Conflict,
    InternalError,
    InvalidArgument,
    NotFound,
    OutplanClient,
    OutplanError,
    expect,
)

from .backoff import Backoff

__all__ = [
    "REPLY_TO",
    "Conflict",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "OutplanClient",
    "OutplanError",
    "connect_when_ready",
    "expect",
]


async def connect_when_ready(
    connection: AbstractConnection, *, exchange: str = names.COMMAND_EXCHANGE, seconds: float = 30.0
) -> OutplanClient:
    """A started client, once a worker answers a query (it declares its exchange when it starts).

    Tries again with backoff (0.2 s doubling to 2 s, jittered) until ``seconds`` have passed, then
    raises ``TimeoutError``. Each failed attempt closes the channel it opened, so waiting long
    leaves nothing open on ``connection``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    backoff = Backoff(0.2, 2.0)
    while True:
        client = OutplanClient(connection, exchange=exchange)
        try:
            await client.start()
            await client.send(names.LIST, {"customer_id": str(uuid.uuid4()), "page_size": 1}, timeout=2.0)
            return client
        except (TimeoutError, aio_pika.exceptions.AMQPError) as exc:
            await client.close_channel()
            if loop.time() > deadline:
                raise TimeoutError(f"no worker answered within {seconds} s") from exc
            await asyncio.sleep(min(backoff.next(), max(0.0, deadline - loop.time()) + 0.01))
