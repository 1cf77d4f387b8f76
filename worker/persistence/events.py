"""The event log, which is also the outbox: rows written with the change, published later."""

import uuid

import asyncpg

from ..domain import Versioned

NOTIFY_CHANNEL = "outplan_events"


class EventLog:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def record(self, event_type: str, stored: Versioned, correlation_id: str | None) -> uuid.UUID:
        """Append one event for this change; the relay is woken when the transaction commits.

        ``occurred_at`` is ``now()``, the transaction's time, the same as the row's ``tm_update``.
        """
        event_id = uuid.uuid4()
        outplan = stored.outplan
        await self._conn.execute(
            "WITH added AS ("
            "  INSERT INTO outplan_events (event_id, event_type, outplan_id, customer_id,"
            "   outplan_version, correlation_id, occurred_at, data)"
            "  VALUES ($1, $2, $3, $4, $5, $6, now(), $7)"
            "  RETURNING position)"
            f" SELECT pg_notify('{NOTIFY_CHANNEL}', position::text) FROM added",
            event_id, event_type, outplan.id, outplan.customer_id, stored.version, correlation_id,
            outplan.model_dump_json(),
        )
        return event_id
