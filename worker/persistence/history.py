"""Reading the event log back, in ``eventsequence`` order, for replay and export."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from .outbox import LoggedEvent


@dataclass(frozen=True)
class EventFilter:
    """Which logged (numbered) events to select, published or not; every given condition must hold."""

    from_seq: int | None = None
    to_seq: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    outplan_ids: tuple[UUID, ...] = ()
    customer_id: UUID | None = None
    types: tuple[str, ...] = ()

    def matches(self, event: dict[str, Any]) -> bool:
        """The same conditions on a parsed CloudEvent (for imported files)."""
        seq = event.get("eventsequence", 0)
        moment = datetime.fromisoformat(str(event.get("time", "")).replace("Z", "+00:00"))
        return (
            (self.from_seq is None or seq >= self.from_seq)
            and (self.to_seq is None or seq <= self.to_seq)
            and (self.since is None or moment >= self.since)
            and (self.until is None or moment < self.until)
            and (not self.outplan_ids or UUID(str(event.get("subject"))) in self.outplan_ids)
            and (self.customer_id is None or UUID(str(event.get("customerid"))) == self.customer_id)
            and (not self.types or event.get("type") in self.types)
        )


_WHERE = (
    " WHERE eventsequence > $1 AND ($2::bigint IS NULL OR eventsequence <= $2)"
    " AND ($3::timestamptz IS NULL OR occurred_at >= $3) AND ($4::timestamptz IS NULL OR occurred_at < $4)"
    " AND (cardinality($5::uuid[]) = 0 OR outplan_id = ANY($5::uuid[]))"
    " AND ($6::uuid IS NULL OR customer_id = $6)"
    " AND (cardinality($7::text[]) = 0 OR event_type = ANY($7::text[]))"
)


def _args(selection: EventFilter, after: int) -> tuple[Any, ...]:
    return (
        after,
        selection.to_seq,
        selection.since,
        selection.until,
        list(selection.outplan_ids),
        selection.customer_id,
        list(selection.types),
    )


async def count_events(conn: asyncpg.Connection, selection: EventFilter) -> int:
    """How many events ``select_events`` yields for ``selection`` (one ``count(*)``)."""
    after = (selection.from_seq or 1) - 1
    return int(await conn.fetchval("SELECT count(*) FROM outplan_events" + _WHERE, *_args(selection, after)))


async def select_events(
    conn: asyncpg.Connection, selection: EventFilter, batch: int = 1000
) -> AsyncIterator[list[LoggedEvent]]:
    """Yield the selected events in ``eventsequence`` order, in lists of at most ``batch``: one
    statement per list, keyset-paged on ``eventsequence``."""
    after = (selection.from_seq or 1) - 1
    while True:
        rows = await conn.fetch(
            "SELECT eventsequence, event_id::text, event_type, correlation_id, body, outplan_id::text,"
            " traceparent, tracestate"
            " FROM outplan_events" + _WHERE + " ORDER BY eventsequence LIMIT $8",
            *_args(selection, after),
            batch,
        )
        if not rows:
            return
        yield [LoggedEvent.from_record(r) for r in rows]
        after = rows[-1]["eventsequence"]
