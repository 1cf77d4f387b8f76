"""SQL the relay runs on its own connection: sequencing, reading and marking the outbox.

Sequence numbers are given here, under the relay's advisory lock, to committed rows only
and in insertion order. A transaction that commits late is therefore sequenced when it
becomes visible, never skipped; and an outplan's next change can only be inserted after
its previous one committed, so per-outplan version order is kept.
"""

import json
from dataclasses import dataclass
from datetime import UTC

import asyncpg

RELAY_LOCK_KEY = 7_402_911_002


@dataclass(frozen=True, slots=True)
class PendingEvent:
    eventsequence: int
    event_id: str
    event_type: str
    correlation_id: str | None
    body: bytes


class OutboxStore:
    def __init__(self, conn: asyncpg.Connection, *, source: str) -> None:
        self._conn = conn
        self._source = source

    async def try_lock(self) -> bool:
        """Become the one relay that publishes; held as long as this connection lives."""
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY))

    async def sequence_pending(self, limit: int) -> int:
        """Give the next sequence numbers and final bodies to committed, unsequenced events."""
        async with self._conn.transaction():
            rows = await self._conn.fetch(
                "SELECT position, event_id, event_type, outplan_id, customer_id, outplan_version,"
                " occurred_at, data FROM outplan_events WHERE eventsequence IS NULL"
                " ORDER BY position LIMIT $1",
                limit,
            )
            if not rows:
                return 0
            last = await self._conn.fetchval("SELECT coalesce(max(eventsequence), 0) FROM outplan_events")
            positions, sequences, bodies = [], [], []
            for offset, row in enumerate(rows, start=1):
                positions.append(row["position"])
                sequences.append(last + offset)
                bodies.append(self._body(row, last + offset))
            await self._conn.execute(
                "UPDATE outplan_events SET eventsequence = u.seq, body = u.body"
                " FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS u(position, seq, body)"
                " WHERE outplan_events.position = u.position",
                positions, sequences, bodies,
            )
            return len(rows)

    def _body(self, row: asyncpg.Record, sequence: int) -> bytes:
        envelope = {
            "specversion": "1.0",
            "id": str(row["event_id"]),
            "source": self._source,
            "type": row["event_type"],
            "subject": str(row["outplan_id"]),
            "time": row["occurred_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "datacontenttype": "application/json",
            "customerid": str(row["customer_id"]),
            "outplanversion": row["outplan_version"],
            "eventsequence": sequence,
        }
        # `data` is spliced in as stored, so it is byte for byte the reply's outplan.
        head = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
        return (head[:-1] + ',"data":' + row["data"] + "}").encode()

    async def unpublished(self, limit: int) -> list[PendingEvent]:
        rows = await self._conn.fetch(
            "SELECT e.eventsequence, e.event_id, e.event_type, e.correlation_id, e.body"
            " FROM outplan_events e WHERE e.eventsequence IS NOT NULL AND e.published_at IS NULL"
            " ORDER BY e.eventsequence LIMIT $1",
            limit,
        )
        return [
            PendingEvent(r["eventsequence"], str(r["event_id"]), r["event_type"], r["correlation_id"], r["body"])
            for r in rows
        ]

    async def mark_published(self, up_to: int) -> None:
        await self._conn.execute(
            "UPDATE outplan_events SET published_at = now()"
            " WHERE eventsequence <= $1 AND published_at IS NULL AND eventsequence IS NOT NULL",
            up_to,
        )

    async def backlog(self) -> tuple[int, float | None]:
        """How many events wait to be published, and the age in seconds of the oldest."""
        row = await self._conn.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM now() - min(occurred_at))::float8 AS age"
            " FROM outplan_events WHERE published_at IS NULL"
        )
        return int(row["n"]), row["age"]
