"""SQL the relay runs on its own connection: sequencing, reading and marking the outbox.

Sequence numbers are given here, under the relay's advisory lock, to committed rows only
and in insertion order. A transaction that commits late is therefore sequenced when it
becomes visible, never skipped; and an outplan's next change can only be inserted after
its previous one committed, so per-outplan version order is kept.
"""

import json
from dataclasses import dataclass

import asyncpg

RELAY_LOCK_KEY = 7_402_911_002


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """A sequenced event as it is (or was) published: its number, id, type and exact body."""

    eventsequence: int
    event_id: str
    event_type: str
    correlation_id: str | None
    body: bytes


_SEQUENCE_NEXT = """
WITH marked AS (
    UPDATE outbox_state SET published_through = greatest(published_through, $4) WHERE $4::bigint IS NOT NULL
), picked AS (
    SELECT position, row_number() OVER (ORDER BY position) AS n
    FROM outplan_events WHERE eventsequence IS NULL ORDER BY position LIMIT $1
), numbered AS (
    UPDATE outplan_events e SET
        eventsequence = $2 + p.n,
        body = convert_to(format(
            '{"specversion":"1.0","id":"%s","source":%s,"type":"%s","subject":"%s","time":"%s",'
            '"datacontenttype":"application/json","customerid":"%s","outplanversion":%s,'
            '"eventsequence":%s,"data":%s}',
            e.event_id, $3::text, e.event_type, e.outplan_id,
            to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            e.customer_id, e.outplan_version, $2 + p.n, e.data), 'UTF8')
    FROM picked p WHERE e.position = p.position
    RETURNING e.eventsequence, e.event_id::text, e.event_type, e.correlation_id, e.body
)
SELECT * FROM numbered ORDER BY eventsequence
"""


# Not yet confirmed: never sequenced, or sequenced past the published watermark.
BACKLOG = """
SELECT count(*) AS n, extract(epoch FROM now() - min(occurred_at))::float8 AS age FROM (
    SELECT occurred_at FROM outplan_events WHERE eventsequence IS NULL
    UNION ALL
    SELECT occurred_at FROM outplan_events WHERE eventsequence > (SELECT published_through FROM outbox_state)
) AS waiting
"""


class OutboxStore:
    def __init__(self, conn: asyncpg.Connection, *, source: str) -> None:
        self._conn = conn
        self._source = source
        self._last_sequence: int | None = None  # only the lock holder gives numbers, so caching is safe

    async def try_lock(self) -> bool:
        """Become the one relay that publishes; held as long as this connection lives."""
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY))

    async def sequence_next(self, limit: int, *, mark_published: int | None = None) -> list[LoggedEvent]:
        """Give the next sequence numbers and final bodies to committed, unsequenced events.

        One statement: it picks committed rows in insertion order, numbers them after the last
        sequence given, writes the CloudEvents body they will be published with (and re-published
        with, byte for byte), and returns them in sequence order. With ``mark_published`` it also
        marks the events up to that sequence as published (they are disjoint from those it picks).
        """
        if self._last_sequence is None:
            self._last_sequence = int(await self._conn.fetchval(
                "SELECT coalesce(max(eventsequence), 0) FROM outplan_events"))
        rows = await self._conn.fetch(_SEQUENCE_NEXT, limit, self._last_sequence, json.dumps(self._source),
                                      mark_published)
        if rows:
            self._last_sequence = rows[-1]["eventsequence"]
        return [LoggedEvent(r["eventsequence"], r["event_id"], r["event_type"], r["correlation_id"], r["body"])
                for r in rows]

    async def unpublished(self, limit: int) -> list[LoggedEvent]:
        """Sequenced but not known to be confirmed: published again with their numbers and bodies."""
        rows = await self._conn.fetch(
            "SELECT e.eventsequence, e.event_id, e.event_type, e.correlation_id, e.body FROM outplan_events e"
            " WHERE e.eventsequence > (SELECT published_through FROM outbox_state)"
            " ORDER BY e.eventsequence LIMIT $1",
            limit,
        )
        return [
            LoggedEvent(r["eventsequence"], str(r["event_id"]), r["event_type"], r["correlation_id"], r["body"])
            for r in rows
        ]

    async def mark_published(self, up_to: int) -> None:
        """Every event up to this sequence was confirmed."""
        await self._conn.execute(
            "UPDATE outbox_state SET published_through = greatest(published_through, $1)", up_to)

    async def backlog(self) -> tuple[int, float | None]:
        """How many events wait to be published, and the age in seconds of the oldest."""
        row = await self._conn.fetchrow(BACKLOG)
        return int(row["n"]), row["age"]
