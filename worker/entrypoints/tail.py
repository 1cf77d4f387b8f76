"""``outplan-worker tail``: print live events as they arrive, for people."""

import argparse
import asyncio
import signal
import sys
import uuid

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from contracts import OutplanEvent, names, parse_event
from contracts.errors import validation_details

from ..messaging.brokers import connect_first
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


def describe(event: OutplanEvent) -> str:
    """One line for an event (without ``--json``): its time, sequence, type, outplan, version,
    customer, name, source and timing (ms)."""
    data = event.data
    return (
        f"{event.time:%Y-%m-%d %H:%M:%S.%f} #{event.eventsequence} {event.type:<15} "
        f"outplan={event.subject} v{event.outplanversion} customer={event.customerid} "
        f"name={data.name!r} source={data.source.type}:{data.source.target} "
        f"dial_timeout={data.dial_timeout} try_interval={data.try_interval}"
        + (f" deleted={data.tm_delete}" if event.type == names.OUTPLAN_DELETED else "")
    )


def skipped(message: AbstractIncomingMessage, error: ValidationError) -> str:
    """The one warning line for a message on the exchange that is not an outplan event: its
    ``message_id``, routing key and the first thing wrong with its body."""
    details = validation_details(error)
    reason = details[0].message if details else str(error)
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return (
        f"tail: skipped message {message.message_id or '(no message_id)'} "
        f"({message.routing_key}): not an outplan event: {reason}{more}"
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
        connection = await connect_first(settings.amqp_urls, timeout=10)
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
            try:
                event = parse_event(message.body)
            except ValidationError as exc:
                # Anyone may publish to the exchange: a foreign body is reported and tailing goes on.
                print(skipped(message, exc), file=sys.stderr, flush=True)
                return
            if customer is None or str(event.customerid) == customer:
                print(message.body.decode() if args.json else describe(event), flush=True)

        await queue.consume(show, no_ack=True)
        print(f"tail: listening on {settings.event_exchange} (Ctrl-C to stop)", file=sys.stderr)
        await stop.wait()
    return 0
