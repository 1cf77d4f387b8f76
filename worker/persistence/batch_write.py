"""Write a whole batch of changes with one statement: new and changed outplans, their events,
and the idempotency records with their replies. A round trip per step cost more than the work,
and one statement is atomic without a transaction around it."""

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson
import pydantic_core

from contracts.timefmt import NOT_DELETED

from ..domain import ConcurrentChange, Versioned
from .connections import Connection
from .inbox import IdempotencyRecord
from .outbox import NOTIFY_CHANNEL, LoggedEvent
from .outplans import COLUMNS, MUTABLE


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event for the batch to write: its type, the outplan after the change (id, customer and
    version go into the row), the command's ``message_id`` as ``correlation_id``, ``data``, and the
    command's W3C trace context (``traceparent``, ``tracestate``; stored, and written into the body)."""

    event_type: str
    stored: Versioned
    correlation_id: str | None
    data: str  # the outplan as JSON, the same bytes as the reply's ``data``
    traceparent: str | None = None
    tracestate: str | None = None


def _outplan_json(rows: list[Versioned]) -> str:
    """Rows as one JSON array for json_populate_recordset: one parameter however many rows."""
    out = []
    for stored in rows:
        o, src = stored.outplan, stored.outplan.source
        out.append(
            {
                "id": str(o.id),
                "customer_id": str(o.customer_id),
                "name": o.name,
                "detail": o.detail,
                "source_type": src.type,
                "source_target": src.target,
                "source_target_name": src.target_name,
                "source_name": src.name,
                "source_detail": src.detail,
                "dial_timeout": o.dial_timeout,
                "try_interval": o.try_interval,
                **{f"max_try_count_{i}": getattr(o, f"max_try_count_{i}") for i in range(5)},
                "version": stored.version,
                "tm_create": o.tm_create + "+00",
                "tm_update": o.tm_update + "+00",
                "tm_delete": None if o.tm_delete == NOT_DELETED else o.tm_delete + "+00",
            }
        )
    return orjson.dumps(out).decode()


def _statement() -> str:
    assignments = ", ".join(f"{c} = u.{c}" for c in MUTABLE)
    return (
        f"WITH inserted AS (INSERT INTO outplans ({COLUMNS})"
        f"  SELECT {COLUMNS} FROM json_populate_recordset(NULL::outplans, $1::json) RETURNING 1),"
        # Only where the stored version is still the one the batch started from.
        f" replaced AS (UPDATE outplans o SET {assignments}"
        "  FROM json_populate_recordset(NULL::outplans, $2::json) AS u"
        "  JOIN unnest($6::uuid[], $7::int[]) AS b(id, version) ON b.id = u.id"
        "  WHERE o.id = u.id AND o.version = b.version RETURNING 1),"
        # A message id recorded by a concurrent writer fails here on the primary key.
        " recorded AS (INSERT INTO processed_commands (customer_id, message_id, command, body_hash,"
        "   status_code, reply, processed_at)"
        "  SELECT r.customer_id, r.message_id, r.command, decode(r.body_hash, 'hex'), r.status_code,"
        "   convert_to(r.reply, 'UTF8'), $5"
        "  FROM json_to_recordset($4::json)"
        "   AS r(customer_id uuid, message_id text, command text, body_hash text, status_code smallint,"
        "    reply text)"
        "  RETURNING 1),"
        # The event numbers, taken last: the counter stays locked until this statement commits, so
        # it must not wait on another writer's row while holding it (the subqueries run first).
        " numbered AS (UPDATE event_sequence SET last_value = last_value + $8"
        "  WHERE $8 > 0 AND (SELECT count(*) FROM inserted) + (SELECT count(*) FROM replaced)"
        "   + (SELECT count(*) FROM recorded) >= 0"
        "  RETURNING last_value - $8 AS base),"
        # outplan_traced_event_body (migration 0005) builds each CloudEvents body, the bytes the relay
        # publishes: contracts.events.OutplanEvent is the contract, and
        # tests/integration/test_wire_events.py proves them equal to its model_dump_json.
        # A concurrent writer of the same outplan version fails here on its unique key.
        " events AS (INSERT INTO outplan_events (event_id, event_type, outplan_id, customer_id,"
        "   outplan_version, correlation_id, occurred_at, data, eventsequence, traceparent, tracestate, body)"
        "  SELECT e.id, e.type, e.outplan, e.customer, e.version, e.correlation, $5, e.data, s.base + e.n,"
        "   e.traceparent, e.tracestate,"
        "   outplan_traced_event_body(e.id, $9, e.type, e.outplan, $5, e.customer, e.version, s.base + e.n,"
        "    e.traceparent, e.tracestate, e.data)"
        "  FROM ROWS FROM (json_to_recordset($3::json)"
        "   AS (id uuid, type text, outplan uuid, customer uuid, version int, correlation text, data text,"
        "    traceparent text, tracestate text))"
        "   WITH ORDINALITY AS e(id, type, outplan, customer, version, correlation, data, traceparent,"
        "    tracestate, n), numbered s"
        "  ORDER BY e.n RETURNING eventsequence, body),"
        # The payload is the highest number written: a relay that has read that far need not look.
        f" woken AS (SELECT pg_notify('{NOTIFY_CHANNEL}', max(eventsequence)::text) FROM events"
        "  HAVING count(*) > 0),"
        " counted AS (SELECT (SELECT count(*) FROM inserted) AS inserted,"
        "  (SELECT count(*) FROM replaced) AS replaced,"
        "  (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM recorded) AS recorded,"
        "  (SELECT count(*) FROM woken) AS woken)"
        " SELECT c.*, (SELECT min(eventsequence) FROM events) AS first_sequence,"
        "  (SELECT array_agg(body ORDER BY eventsequence) FROM events) AS bodies,"
        "  CASE WHEN c.replaced <> cardinality($6::uuid[])"
        "  THEN outplan_write_conflict('an outplan changed since the batch read it') END AS conflict"
        " FROM counted c"
    )


_WRITE = _statement()


async def write_changes(
    conn: Connection,
    *,
    inserted: list[Versioned],
    replaced: list[Versioned],
    events: list[NewEvent],
    records: list[IdempotencyRecord],
    read_versions: dict[uuid.UUID, int],
    moment: datetime,
    source: str,
) -> list[LoggedEvent]:
    """One statement, atomic on its own; returns the new events as they will be published, in order.

    ``read_versions`` are the versions the replaced outplans had when the batch read them. If
    another writer got there first, nothing is written and ``ConcurrentChange`` is raised. The
    events are numbered and given their published bodies (CloudEvents with ``source``) here; the
    relay is woken when the statement (or the enclosing transaction) commits. Raises
    ``RuntimeError`` when the statement touched other row counts than asked: a bug, reported after
    the fact (without an enclosing transaction the statement has already committed).
    """
    event_ids = [uuid.uuid4() for _ in events]
    event_rows = [
        {
            "id": str(i),
            "type": e.event_type,
            "outplan": str(e.stored.outplan.id),
            "customer": str(e.stored.outplan.customer_id),
            "version": e.stored.version,
            "correlation": e.correlation_id,
            "data": e.data,
            "traceparent": e.traceparent,
            "tracestate": e.tracestate,
        }
        for i, e in zip(event_ids, events, strict=True)
    ]
    reply_rows = [
        {
            "customer_id": str(r.key[0]),
            "message_id": r.key[1],
            "command": r.command,
            "body_hash": r.body_hash.hex(),
            "status_code": r.status_code,
            "reply": r.reply.decode(),
        }
        for r in records
    ]
    base = [(stored.outplan.id, read_versions[stored.outplan.id]) for stored in replaced]
    try:
        row = await conn.fetchrow(
            _WRITE,
            _outplan_json(inserted),
            _outplan_json(replaced),
            orjson.dumps(event_rows).decode(),
            orjson.dumps(reply_rows).decode(),
            moment,
            [i for i, _ in base],
            [v for _, v in base],
            len(events),
            # As the event model serialises its ``source``: json.dumps would escape non-ASCII and
            # DEL (``"\u00e9"``), which parses alike but is not the model's bytes.
            pydantic_core.to_json(source).decode(),
        )
    except (asyncpg.UniqueViolationError, asyncpg.SerializationError) as exc:
        raise ConcurrentChange(str(exc)) from exc
    assert row is not None  # the statement ends in a SELECT of one row of counts
    expected = (len(inserted), len(replaced), len(events), len(records))
    if (row["inserted"], row["replaced"], row["events"], row["recorded"]) != expected:
        raise RuntimeError(f"batch write touched {tuple(row.values())[:4]} rows, expected {expected}")
    if not events:
        return []
    first = row["first_sequence"]
    return [
        LoggedEvent(
            first + n,
            str(i),
            e.event_type,
            e.correlation_id,
            body,
            str(e.stored.outplan.id),
            e.traceparent,
            e.tracestate,
        )
        for n, (i, e, body) in enumerate(zip(event_ids, events, row["bodies"], strict=True))
    ]
