"""A downstream dialer's subscriber: keeps a SQLite table of live outplans current from events.

    python examples/dialer_subscriber.py --db dialer.sqlite3 [--amqp-url URL] [--queue NAME]

It owns a durable queue bound to every outplan event, so nothing is missed while it is down.
Duplicates (same event id) and stale versions are ignored; a deleted outplan leaves the table.
Needs only `contracts` (pydantic) and aio-pika.

Tracing is optional: with OpenTelemetry installed, each event is applied in a CONSUMER span
`process <queue>` that continues the trace of the command that caused the event (its CloudEvents
`traceparent`). With the SDK and the OTLP/HTTP exporter installed and `OTEL_EXPORTER_OTLP_ENDPOINT`
set (e.g. `http://localhost:4318`, the compose file's Jaeger), those spans are exported there.
"""

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from contracts import OutplanDeleted, OutplanEvent, names, parse_event, tracing

SCHEMA = """
CREATE TABLE IF NOT EXISTS outplans (
    id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL,
    source_type TEXT, source_target TEXT, dial_timeout INTEGER, try_interval INTEGER,
    max_try_counts TEXT, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_events (id TEXT PRIMARY KEY);
"""


def export_spans() -> Callable[[], None]:
    """Export spans over OTLP/HTTP when the SDK is installed and OTEL_EXPORTER_OTLP_ENDPOINT is set
    (the service name from OTEL_SERVICE_NAME); returns what flushes them at exit."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return lambda: None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return lambda: None
    provider = TracerProvider()  # its Resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider.shutdown


def apply(db: sqlite3.Connection, event: OutplanEvent) -> str:
    """Apply one event in one SQLite transaction; returns what happened."""
    with db:
        if db.execute("INSERT OR IGNORE INTO seen_events VALUES (?)", (str(event.id),)).rowcount == 0:
            return "duplicate"
        row = db.execute("SELECT version FROM outplans WHERE id = ?", (str(event.subject),)).fetchone()
        if row is not None and row[0] >= event.outplanversion:
            return "stale"
        d = event.data
        db.execute(
            "INSERT OR REPLACE INTO outplans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(d.id),
                str(d.customer_id),
                event.outplanversion,
                int(isinstance(event, OutplanDeleted)),
                d.source.type,
                d.source.target,
                d.dial_timeout,
                d.try_interval,
                ",".join(str(getattr(d, f"max_try_count_{i}")) for i in range(5)),
                d.model_dump_json(),
            ),
        )
    return "applied"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--exchange", default=names.EVENT_EXCHANGE)
    parser.add_argument("--queue", default="dialer.outplans")
    parser.add_argument("--db", default="dialer.sqlite3")
    args = parser.parse_args()

    flush_spans = export_spans()
    db = sqlite3.connect(args.db)
    db.executescript(SCHEMA)
    connection = await aio_pika.connect_robust(args.amqp_url)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        exchange = await channel.declare_exchange(args.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(args.queue, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, routing_key="#")

        async def on_event(message: AbstractIncomingMessage) -> None:
            try:
                event = parse_event(message.body)
            except ValidationError as exc:
                print(f"rejected a malformed event {message.message_id}: {exc.error_count()} error(s)")
                await message.reject(requeue=False)
                return
            with tracing.processing(event, args.queue):
                outcome = apply(db, event)
            await message.ack()
            print(f"{outcome:<9} {message.type} {message.message_id}", flush=True)

        await queue.consume(on_event)
        print(f"listening on {args.queue}; live outplans in {args.db}", flush=True)
        await stop.wait()
    db.close()
    with contextlib.suppress(Exception):  # an unreachable collector must not fail the shutdown
        flush_spans()


if __name__ == "__main__":
    asyncio.run(main())
