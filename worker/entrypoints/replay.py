"""``outplan-worker replay``: send past events again, selected from the event log or a file."""

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TextIO

import aio_pika
import asyncpg

from contracts import names

from ..messaging.brokers import connect_first
from ..messaging.event_publishing import Progress, Republisher, Target
from ..observability.spans import Peer
from ..persistence.history import EventFilter, count_events, select_events
from ..persistence.outbox import LoggedEvent
from ..refusals import EX_CONFIG, Misconfigured, certificate_refusal
from ..settings import Settings


class BadArguments(Exception):
    """Reported before anything is sent; exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``replay``'s options (selection, target, mode) to its sub-parser; ``selection_from``
    checks how they combine."""
    pick = parser.add_argument_group("selection (conditions combine)")
    pick.add_argument("--from-seq", type=int, help="first eventsequence (inclusive)")
    pick.add_argument("--to-seq", type=int, help="last eventsequence (inclusive)")
    pick.add_argument("--since", help="events at or after this RFC 3339 time")
    pick.add_argument("--until", help="events before this RFC 3339 time")
    pick.add_argument("--outplan-id", action="append", default=[], help="an outplan id (repeatable)")
    pick.add_argument("--customer-id", help="one customer's events")
    pick.add_argument("--type", action="append", default=[], dest="types", help="an event type (repeatable)")
    to = parser.add_argument_group("target (default: the events exchange, routing key = event type)")
    to.add_argument("--exchange", help="another exchange")
    to.add_argument("--routing-key", help="routing key for --exchange (default: the event type)")
    to.add_argument("--queue", help="one queue, through the default exchange (feeds a single subscriber)")
    mode = parser.add_argument_group("mode")
    mode.add_argument(
        "--dry-run", action="store_true", help="print what would be sent as JSON Lines; send nothing"
    )
    mode.add_argument(
        "--export", metavar="FILE", help="write the selected events' bodies to FILE as JSON Lines"
    )
    mode.add_argument(
        "--import",
        dest="import_file",
        metavar="FILE",
        help="publish events from a JSON Lines FILE written by --export (bodies only: no correlation_id)",
    )
    mode.add_argument("--rate", type=float, help="at most N events per second")


def _time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadArguments(f"{flag} {value!r} is not an RFC 3339 time (e.g. 2026-11-27T00:00:00Z)") from None
    if moment.tzinfo is None:
        raise BadArguments(f"{flag} {value!r} needs a time zone (e.g. Z or +01:00)")
    return moment


def _uuid(value: str, flag: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadArguments(f"{flag} {value!r} is not a UUID") from None


def selection_from(args: argparse.Namespace) -> EventFilter:
    """The ``EventFilter`` the parsed arguments select.

    Raises ``BadArguments`` for ``--from-seq`` below 1 or after ``--to-seq``, a ``--since`` or
    ``--until`` that is not RFC 3339 with an offset or not in order, an unknown ``--type``, a
    ``--rate`` that is not positive, a malformed UUID, and options that exclude each other.
    """
    if args.from_seq is not None and args.from_seq < 1:
        raise BadArguments("--from-seq must be at least 1")
    if args.from_seq is not None and args.to_seq is not None and args.from_seq > args.to_seq:
        raise BadArguments(f"--from-seq {args.from_seq} is after --to-seq {args.to_seq}")
    since, until = _time(args.since, "--since"), _time(args.until, "--until")
    if since and until and since >= until:
        raise BadArguments(f"--since {args.since} is not before --until {args.until}")
    unknown = [t for t in args.types if t not in names.EVENT_TYPES]
    if unknown:
        raise BadArguments(
            f"unknown event type {unknown[0]!r}; expected one of {', '.join(names.EVENT_TYPES)}"
        )
    if args.rate is not None and args.rate <= 0:
        raise BadArguments("--rate must be a positive number of events per second")
    if args.queue and (args.exchange or args.routing_key):
        raise BadArguments("--queue cannot be combined with --exchange or --routing-key")
    if args.routing_key and not args.exchange:
        raise BadArguments("--routing-key needs --exchange")
    if sum(bool(x) for x in (args.dry_run, args.export, args.import_file)) > 1:
        raise BadArguments("--dry-run, --export and --import exclude each other")
    return EventFilter(
        from_seq=args.from_seq,
        to_seq=args.to_seq,
        since=since,
        until=until,
        outplan_ids=tuple(_uuid(v, "--outplan-id") for v in args.outplan_id),
        customer_id=_uuid(args.customer_id, "--customer-id") if args.customer_id else None,
        types=tuple(args.types),
    )


async def _from_database(
    conn: asyncpg.Connection, selection: EventFilter
) -> AsyncIterator[list[LoggedEvent]]:
    async for batch in select_events(conn, selection):
        yield batch


def _read_file(path: Path, selection: EventFilter) -> list[LoggedEvent]:
    """The events of an ``--export`` file (JSON Lines, each line an event body exactly as it was
    published) that ``selection`` matches, in file order; each line is published as it is.

    Imported events carry no ``correlation_id``: it is an AMQP property of the published event (the
    command's ``message_id``), never part of the body, and the export writes bodies only (adding it
    to the line would change the bytes published). Raises ``BadArguments`` naming the first line
    that is not an exported event."""
    events = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            if not selection.matches(event):
                continue
            events.append(
                LoggedEvent(
                    int(event["eventsequence"]),
                    str(event["id"]),
                    str(event["type"]),
                    None,  # not in the body: see the docstring
                    line,
                    str(event["subject"]),
                    # The trace context stored with it is in the body: its publish continues it.
                    _text(event.get("traceparent")),
                    _text(event.get("tracestate")),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BadArguments(f"{path}:{number} is not an exported event: {exc}") from None
    return events


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Reporter:
    """A progress line on a terminal, a plain line every few seconds otherwise, on ``stream``, out
    of ``total`` selected events."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream, self._total = stream, total
        self._tty = stream.isatty()
        self._last = 0.0

    def update(self, progress: Progress, final: bool = False) -> None:
        """Show ``progress`` if the last line is old enough (0.2 s on a terminal, 5 s otherwise);
        ``final`` shows it at once and ends the terminal's line (off a terminal the summary does)."""
        now = time.monotonic()
        if not final and now - self._last < (0.2 if self._tty else 5.0):
            return
        self._last = now
        if self._tty:
            done = progress.settled / self._total if self._total else 1.0
            bar = "#" * int(done * 30)
            self._stream.write(
                f"\r[{bar:<30}] {progress.settled}/{self._total} sent, "
                f"{progress.rate:,.0f} events/s" + ("\n" if final else "")
            )
        elif not final:
            self._stream.write(
                f"replay: {progress.settled}/{self._total} sent, {progress.rate:,.0f} events/s\n"
            )
        self._stream.flush()


async def _check_target(channel: aio_pika.abc.AbstractChannel, target: Target) -> None:
    try:
        if target.queue is not None:
            await channel.declare_queue(target.queue, passive=True)
        else:
            await channel.declare_exchange(target.exchange, passive=True)
    except aio_pika.exceptions.ChannelClosed as exc:
        what = f"queue {target.queue!r}" if target.queue is not None else f"exchange {target.exchange!r}"
        raise BadArguments(f"{what} does not exist ({exc})") from None


async def replay(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``outplan-worker replay``; returns the exit status: 0 when every selected event was
    confirmed (or, to the events exchange, unrouted), 1 when one failed, 2 for bad arguments or an
    unreachable database or broker (before anything is sent), 78 when the database's or the
    broker's TLS certificate is refused, 130 when stopped by a signal."""
    try:
        selection = selection_from(args)
        return await _replay(args, settings, selection)
    except BadArguments as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    except Misconfigured as exc:  # a TLS certificate refused: nothing to wait for
        print(f"replay: {exc}", file=sys.stderr)
        return EX_CONFIG


async def _replay(args: argparse.Namespace, settings: Settings, selection: EventFilter) -> int:
    imported = _read_file(Path(args.import_file), selection) if args.import_file else None
    conn = None
    if imported is None:
        try:
            conn = await asyncpg.connect(settings.database_url.get_secret_value())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            refused = certificate_refusal("database", "OUTPLAN_DATABASE_URL", exc)
            if refused is not None:
                raise refused from None
            raise BadArguments(f"cannot reach the database: {type(exc).__name__}") from None
    try:
        if args.dry_run or args.export:
            assert conn is not None
            out = open(args.export, "wb") if args.export else sys.stdout.buffer  # noqa: SIM115
            written = 0
            try:
                async for batch in select_events(conn, selection):
                    for event in batch:
                        out.write(event.body + b"\n")
                        written += 1
            finally:
                if args.export:
                    out.close()
            print(
                f"replay: {written} event(s) {'exported to ' + args.export if args.export else 'selected'}",
                file=sys.stderr,
            )
            return 0
        if imported is not None:
            total = len(imported)
        else:
            assert conn is not None  # connected above when nothing was imported
            total = await count_events(conn, selection)
        return await _publish(args, settings, selection, conn, imported, total)
    finally:
        if conn is not None:
            await conn.close()


async def _publish(
    args: argparse.Namespace,
    settings: Settings,
    selection: EventFilter,
    conn: asyncpg.Connection | None,
    imported: list[LoggedEvent] | None,
    total: int,
) -> int:
    target = (
        Target(queue=args.queue)
        if args.queue
        else Target(exchange=args.exchange or settings.event_exchange, routing_key=args.routing_key)
    )
    try:
        connection = await connect_first(settings.amqp_urls, timeout=10)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
        refused = certificate_refusal("broker", "OUTPLAN_AMQP_URL", exc)
        if refused is not None:
            raise refused from None
        raise BadArguments(f"cannot reach the broker: {type(exc).__name__}") from None
    async with connection:
        await _check_target(await connection.channel(), target)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
        run_id = str(uuid.uuid4())
        republisher = Republisher(
            channel,
            target,
            run_id=run_id,
            rate=args.rate,
            broker=Peer.from_url(settings.amqp_url.get_secret_value(), 5672),
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, republisher.stop_requested.set)
        loop.add_signal_handler(signal.SIGTERM, republisher.stop_requested.set)
        progress = Progress()
        reporter = Reporter(sys.stderr, total)

        async def batches() -> AsyncIterator[list[LoggedEvent]]:
            if imported is not None:
                source = _listed(imported)
            else:
                assert conn is not None  # connected when nothing was imported
                source = _from_database(conn, selection)
            async for batch in source:
                reporter.update(progress)
                yield batch

        await republisher.run(batches(), progress)
        reporter.update(progress, final=True)
    interrupted = republisher.stop_requested.is_set()
    if progress.unrouted:
        print(
            f"replay: {progress.unrouted} event(s) matched no binding of exchange {target.exchange!r} "
            "(no subscriber wants their type)",
            file=sys.stderr,
        )
    summary = {
        "run_id": run_id,
        "selected": total,
        "confirmed": progress.confirmed,
        "unrouted": progress.unrouted,
        "failed": progress.failed,
        "last_confirmed_seq": progress.last_confirmed_seq,
        "seconds": round(time.monotonic() - progress.started, 3),
        "events_per_second": round(progress.rate, 1),
        "interrupted": interrupted,
        "error": progress.error,
    }
    print(json.dumps(summary), file=sys.stderr)
    if interrupted:
        resume = (progress.last_confirmed_seq or (selection.from_seq or 1) - 1) + 1
        print(
            f"replay: interrupted; last confirmed eventsequence {progress.last_confirmed_seq}; "
            f"resume with --from-seq {resume}",
            file=sys.stderr,
        )
        return 130
    return 0 if progress.settled == total and not progress.failed else 1


async def _listed(events: list[LoggedEvent], size: int = 1000) -> AsyncIterator[list[LoggedEvent]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]
