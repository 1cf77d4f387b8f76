"""``outplan-worker tail``: print live events as they arrive, for people."""

import argparse
import asyncio
import json
import signal
import sys
import uuid

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from contracts import names, parse_event

from ..settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``tail``'s options to its sub-parser: ``--type`` (repeatable), ``--customer-id``, ``--json``."""
    parser.add_argument(
        "--type",
        action="append",
        default=[],
        dest="types",
        choices=names.EVENT_TYPES,
        help="only this event type (repeatable)",
    )
    parser.add_argument("--customer-id", help="only this customer's events")
    parser.add_argument("--json", action="store_true", help="print each event body as one JSON line")


def render(body: bytes, *, as_json: bool) -> str:
    """One line for an event body: the body itself with ``as_json``, else its time, sequence, type,
    outplan, version, customer, name, source and timing (ms). Raises ``pydantic.ValidationError``
    for a body that is not an outplan event."""
    if as_json:
        return body.decode()
    event = parse_event(body)
    data = event.data
    return (
        f"{event.time:%Y-%m-%d %H:%M:%S.%f} #{event.eventsequence} {event.type:<15} "
        f"outplan={event.subject} v{event.outplanversion} customer={event.customerid} "
        f"name={data.name!r} source={data.source.type}:{data.source.target} "
        f"dial_timeout={data.dial_timeout} try_interval={data.try_interval}"
        + (f" deleted={data.tm_delete}" if event.type == names.OUTPLAN_DELETED else "")
    )


async def tail(args: argparse.Namespace, settings: Settings) -> int:
    """Print the events exchange's events until SIGINT or SIGTERM, through an exclusive queue bound
    to each ``--type`` (all when none); returns 0, or 2 for a bad ``--customer-id`` or no broker."""
    customer = None
    if args.customer_id:
        try:
            customer = str(uuid.UUID(args.customer_id))
        except ValueError:
            print(f"tail: --customer-id {args.customer_id!r} is not a UUID", file=sys.stderr)
            return 2
    try:
        connection = await aio_pika.connect(settings.amqp_url.get_secret_value(), timeout=10)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
        print(f"tail: cannot reach the broker: {type(exc).__name__}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            settings.event_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)  # gone when tail stops
        for key in args.types or ["#"]:
            await queue.bind(exchange, routing_key=key)

        async def show(message: AbstractIncomingMessage) -> None:
            if customer is None or json.loads(message.body).get("customerid") == customer:
                print(render(message.body, as_json=args.json), flush=True)

        await queue.consume(show, no_ack=True)
        print(f"tail: listening on {settings.event_exchange} (Ctrl-C to stop)", file=sys.stderr)
        await stop.wait()
    return 0
