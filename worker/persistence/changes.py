"""Write a whole batch of changes with one statement: new and changed outplans, their events,
and the replies for the idempotency record. A round trip per step cost more than the work."""

import uuid
from dataclasses import dataclass

import asyncpg
import orjson

from contracts.timefmt import NOT_DELETED

from ..domain import Versioned
from .events import NOTIFY_CHANNEL
from .inbox import Key
from .outplans import COLUMNS, MUTABLE


@dataclass(frozen=True, slots=True)
class NewEvent:
    event_type: str
    stored: Versioned
    correlation_id: str | None
    data: str  # the outplan as JSON, the same bytes as the reply's ``data``


def _outplan_json(rows: list[Versioned]) -> str:
    """Rows as one JSON array for json_populate_recordset: one parameter however many rows."""
    out = []
    for stored in rows:
        o, src = stored.outplan, stored.outplan.source
        out.append({
            "id": str(o.id), "customer_id": str(o.customer_id), "name": o.name, "detail": o.detail,
            "source_type": src.type, "source_target": src.target, "source_target_name": src.target_name,
            "source_name": src.name, "source_detail": src.detail, "dial_timeout": o.dial_timeout,
            "try_interval": o.try_interval, **{f"max_try_count_{i}": getattr(o, f"max_try_count_{i}") for i in range(5)},
            "version": stored.version, "tm_create": o.tm_create + "+00", "tm_update": o.tm_update + "+00",
            "tm_delete": None if o.tm_delete == NOT_DELETED else o.tm_delete + "+00",
        })
    return orjson.dumps(out).decode()


def _statement() -> str:
    assignments = ", ".join(f"{c} = u.{c}" for c in MUTABLE)
    return (
        f"WITH inserted AS (INSERT INTO outplans ({COLUMNS})"
        f"  SELECT {COLUMNS} FROM json_populate_recordset(NULL::outplans, $1::json) RETURNING 1),"
        f" replaced AS (UPDATE outplans o SET {assignments}"
        "  FROM json_populate_recordset(NULL::outplans, $2::json) AS u WHERE o.id = u.id RETURNING 1),"
        # occurred_at is now(), the transaction's time: the same as the rows' tm_update.
        " events AS (INSERT INTO outplan_events (event_id, event_type, outplan_id, customer_id,"
        "   outplan_version, correlation_id, occurred_at, data)"
        "  SELECT e.id, e.type, e.outplan, e.customer, e.version, e.correlation, now(), e.data"
        "  FROM ROWS FROM (json_to_recordset($3::json)"
        "   AS (id uuid, type text, outplan uuid, customer uuid, version int, correlation text, data text))"
        "   WITH ORDINALITY AS e(id, type, outplan, customer, version, correlation, data, n)"
        "  ORDER BY e.n RETURNING position),"  # positions follow the order of the changes
        " remembered AS (UPDATE processed_commands p SET status_code = r.status_code,"
        "   reply = convert_to(r.reply, 'UTF8')"
        "  FROM json_to_recordset($4::json) AS r(customer_id uuid, message_id text, status_code smallint, reply text)"
        "  WHERE p.customer_id = r.customer_id AND p.message_id = r.message_id RETURNING 1),"
        f" woken AS (SELECT pg_notify('{NOTIFY_CHANNEL}', count(*)::text) FROM events HAVING count(*) > 0)"
        " SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM replaced) AS replaced,"
        " (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM remembered) AS remembered,"
        " (SELECT count(*) FROM woken) AS woken"
    )


_WRITE = _statement()


async def write_changes(
    conn: asyncpg.Connection, *, inserted: list[Versioned], replaced: list[Versioned], events: list[NewEvent],
    replies: list[tuple[Key, int, bytes]],
) -> list[uuid.UUID]:
    """Returns the new events' ids, in order. The relay is woken when the transaction commits."""
    event_ids = [uuid.uuid4() for _ in events]
    event_rows = [
        {"id": str(i), "type": e.event_type, "outplan": str(e.stored.outplan.id),
         "customer": str(e.stored.outplan.customer_id), "version": e.stored.version, "correlation": e.correlation_id,
         "data": e.data}
        for i, e in zip(event_ids, events, strict=True)
    ]
    reply_rows = [{"customer_id": str(k[0]), "message_id": k[1], "status_code": status, "reply": reply.decode()}
                  for k, status, reply in replies]
    row = await conn.fetchrow(_WRITE, _outplan_json(inserted), _outplan_json(replaced),
                              orjson.dumps(event_rows).decode(), orjson.dumps(reply_rows).decode())
    expected = (len(inserted), len(replaced), len(events), len(replies))
    if (row["inserted"], row["replaced"], row["events"], row["remembered"]) != expected:
        raise RuntimeError(f"batch write touched {tuple(row.values())[:4]} rows, expected {expected}")
    return event_ids
