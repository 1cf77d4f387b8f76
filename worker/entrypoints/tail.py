"""``outplan-worker tail``: print live events as they arrive, for people."""

import argparse
import asyncio
import signal
import sys
import uuid

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from contracts import OutplanEvent, names, parse_event
from contracts.errors import validation_details

from ..messaging.brokers import connect_first
from ..refusals import EX_CONFIG, Misconfigured, broker_refusal, certificate_refusal
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


async def _listen(channel: AbstractChannel, settings: Settings, keys: list[str]) -> AbstractQueue:
    """An exclusive queue (gone when tail stops) bound to the events exchange with ``keys``.

    The exchange is declared as the worker declares it, or only checked with
    ``OUTPLAN_TOPOLOGY=passive``. The queue is server-named (``amq.gen-…``): a user without
    ``configure`` permission on such names cannot tail. Raises ``Misconfigured`` for what the
    broker refuses (the line names the permission) and for an exchange that does not exist.
    """
    passive = settings.topology == "passive"
    events = f"exchange {settings.event_exchange!r}"
    try:
        exchange = await channel.declare_exchange(
            settings.event_exchange, aio_pika.ExchangeType.TOPIC, durable=True, passive=passive
        )
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise Misconfigured(f"{events} does not exist: start the worker, or declare it") from None
    except aiormq.exceptions.ChannelAccessRefused as exc:
        raise _refused(exc, "exchange.declare", events) from None
    try:
        queue = await channel.declare_queue(exclusive=True)
    except aiormq.exceptions.ChannelAccessRefused as exc:
        raise _refused(exc, "queue.declare", "a server-named queue (amq.gen-…)") from None
    for key in keys:
        try:
            await queue.bind(exchange, routing_key=key)
        except aiormq.exceptions.ChannelAccessRefused as exc:
            raise _refused(exc, "queue.bind", f"queue {queue.name!r} and {events}") from None
    return queue


def _refused(exc: BaseException, operation: str, resource: str) -> Misconfigured:
    refused = broker_refusal(exc, operation, resource)
    assert refused is not None  # exc is an ACCESS_REFUSED
    return refused


async def tail(args: argparse.Namespace, settings: Settings) -> int:
    """Print the events exchange's events until SIGINT or SIGTERM, through an exclusive queue bound
    to each ``--type`` (all when none); returns 0, 2 for a bad ``--customer-id`` or no broker, 78
    when the broker's TLS certificate or a permission is refused (one line on stderr)."""
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
        refused = certificate_refusal("broker", "OUTPLAN_AMQP_URL", exc)
        if refused is not None:
            print(f"tail: {refused}", file=sys.stderr)
            return EX_CONFIG
        print(f"tail: cannot reach the broker: {type(exc).__name__}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with connection:
        channel = await connection.channel()
        try:
            queue = await _listen(channel, settings, args.types or ["#"])
        except Misconfigured as exc:
            print(f"tail: {exc}", file=sys.stderr)
            return EX_CONFIG

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
