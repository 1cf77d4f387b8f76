"""Write a whole batch of changes with one statement: new and changed outplans, their events,
and the replies for the idempotency record. A round trip per step cost more than the work."""

import uuid
from dataclasses import dataclass

import asyncpg

from ..domain import Versioned
from .events import NOTIFY_CHANNEL
from .inbox import Key
from .outplans import COLUMNS, MUTABLE, columns_of, unnest_outplans


@dataclass(frozen=True, slots=True)
class NewEvent:
    event_type: str
    stored: Versioned
    correlation_id: str | None


def _statement() -> str:
    inserted = unnest_outplans(first=1)
    replaced = unnest_outplans(first=21)
    assignments = ", ".join(f"{c} = u.{c}" for c in MUTABLE)
    return (
        f"WITH inserted AS (INSERT INTO outplans ({COLUMNS}) SELECT * FROM {inserted} RETURNING 1),"
        f" replaced AS (UPDATE outplans o SET {assignments} FROM {replaced} AS u({COLUMNS})"
        "  WHERE o.id = u.id RETURNING 1),"
        # occurred_at is now(), the transaction's time: the same as the rows' tm_update.
        " events AS (INSERT INTO outplan_events (event_id, event_type, outplan_id, customer_id,"
        "   outplan_version, correlation_id, occurred_at, data)"
        "  SELECT e.id, e.type, e.outplan, e.customer, e.version, e.correlation, now(), e.data"
        "  FROM unnest($41::uuid[], $42::text[], $43::uuid[], $44::uuid[], $45::int[], $46::text[], $47::text[])"
        "   WITH ORDINALITY AS e(id, type, outplan, customer, version, correlation, data, n)"
        "  ORDER BY e.n RETURNING position),"  # positions follow the order of the changes
        " remembered AS (UPDATE processed_commands p SET status_code = r.status_code, reply = r.reply"
        "  FROM unnest($48::uuid[], $49::text[], $50::smallint[], $51::bytea[])"
        "   AS r(customer_id, message_id, status_code, reply)"
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
    row = await conn.fetchrow(
        _WRITE, *columns_of(inserted), *columns_of(replaced),
        event_ids, [e.event_type for e in events], [e.stored.outplan.id for e in events],
        [e.stored.outplan.customer_id for e in events], [e.stored.version for e in events],
        [e.correlation_id for e in events], [e.stored.outplan.model_dump_json() for e in events],
        [k[0] for k, _, _ in replies], [k[1] for k, _, _ in replies], [s for _, s, _ in replies],
        [r for _, _, r in replies],
    )
    expected = (len(inserted), len(replaced), len(events), len(replies))
    if (row["inserted"], row["replaced"], row["events"], row["remembered"]) != expected:
        raise RuntimeError(f"batch write touched {tuple(row.values())[:4]} rows, expected {expected}")
    return event_ids
