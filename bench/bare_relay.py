"""The broker's own path, with no database: consume -> publish a confirmed persistent copy -> ack.

Run as its own process by the benchmark (``python -m bench.bare_relay SOURCE SINK PREFETCH``),
as the worker is, so that what is measured through it is the floor under the worker's latency:
the same queues, the same instrument, the same cores, with the worker's own work left out.
It is as lean as a relay gets: on the channels beneath aio-pika, on uvloop, one task per
message for its confirm, acked as each confirm arrives. It runs until terminated.
"""

import asyncio
import signal
import sys

import aio_pika
import uvloop
from aiormq import spec
from aiormq.abc import DeliveredMessage

from bench.common import AMQP_URL


async def serve(source: str, sink: str, prefetch: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with await aio_pika.connect(AMQP_URL) as connection:
        consume = await (await connection.channel()).get_underlay_channel()
        await consume.basic_qos(prefetch_count=prefetch)
        publish = await (await connection.channel(publisher_confirms=True)).get_underlay_channel()
        pending: set[asyncio.Task[None]] = set()

        async def forward(msg: DeliveredMessage) -> None:
            await publish.basic_publish(
                msg.body,
                routing_key=sink,
                properties=spec.Basic.Properties(
                    correlation_id=msg.header.properties.message_id, delivery_mode=2
                ),
            )
            await consume.basic_ack(msg.delivery_tag or 0)

        async def on_message(msg: DeliveredMessage) -> None:
            task = asyncio.ensure_future(forward(msg))
            pending.add(task)
            task.add_done_callback(pending.discard)

        await consume.basic_consume(source, on_message)
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
