"""The event log, which is also the outbox: rows written with the change, published later."""

import uuid
from dataclasses import dataclass

import asyncpg

from ..domain import Versioned

NOTIFY_CHANNEL = "outplan_events"


@dataclass(frozen=True, slots=True)
class NewEvent:
    event_type: str
    stored: Versioned
    correlation_id: str | None


class EventLog:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def record(self, events: list[NewEvent]) -> list[uuid.UUID]:
        """Append events in this order (their positions follow it); the relay wakes at commit.

        ``occurred_at`` is ``now()``, the transaction's time, the same as the rows' ``tm_update``.
        """
        if not events:
            return []
        ids = [uuid.uuid4() for _ in events]
        await self._conn.execute(
            "WITH added AS ("
            "  INSERT INTO outplan_events (event_id, event_type, outplan_id, customer_id,"
            "   outplan_version, correlation_id, occurred_at, data)"
            "  SELECT e.id, e.type, e.outplan, e.customer, e.version, e.correlation, now(), e.data"
            "  FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::int[], $6::text[], $7::text[])"
            "   WITH ORDINALITY AS e(id, type, outplan, customer, version, correlation, data, n)"
            "  ORDER BY e.n RETURNING position)"
            f" SELECT pg_notify('{NOTIFY_CHANNEL}', count(*)::text) FROM added",
            ids, [e.event_type for e in events], [e.stored.outplan.id for e in events],
            [e.stored.outplan.customer_id for e in events], [e.stored.version for e in events],
            [e.correlation_id for e in events], [e.stored.outplan.model_dump_json() for e in events],
        )
        return ids
