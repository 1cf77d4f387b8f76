"""The outbox, as the relay and health read it: events in order, the checkpoint, the backlog.

Events arrive here numbered: the statement that writes them takes the numbers from a counter
it holds until it commits (``batch_write``, migration 0004). So numbers follow commit order with
no gaps, a transaction that commits late is never skipped, and an outplan's next change,
which can only be written after its previous one committed, is numbered after it.
"""

from dataclasses import dataclass

import asyncpg

from .connections import Connection

RELAY_LOCK_KEY = 7_402_911_002
NOTIFY_CHANNEL = "outplan_events"
"""The channel a commit that wrote events notifies (``pg_notify``), to wake the relay."""


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """A sequenced event as it is (or was) published: its number, id, type, exact body and outplan,
    and the W3C trace context of the command that caused it (also in the body, as the CloudEvents
    ``traceparent``/``tracestate``; None for events written without one)."""

    eventsequence: int
    event_id: str
    event_type: str
    correlation_id: str | None
    body: bytes
    outplan_id: str  # the relay keeps one outplan's events in order by it
    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> "LoggedEvent":
        """From a row of ``outplan_events`` (or a statement returning its columns by these names)."""
        return cls(
            r["eventsequence"],
            r["event_id"],
            r["event_type"],
            r["correlation_id"],
            r["body"],
            r["outplan_id"],
            r["traceparent"],
            r["tracestate"],
        )


_AFTER = """
WITH checkpoint AS (
    UPDATE outbox_state SET published_through = greatest(published_through, $3) WHERE $3::bigint IS NOT NULL
)
SELECT eventsequence, event_id::text, event_type, correlation_id, body, outplan_id::text,
       traceparent, tracestate
FROM outplan_events WHERE eventsequence > $1 ORDER BY eventsequence LIMIT $2
"""


# Not yet settled as far as the checkpoint knows: numbered past ``published_through``.
BACKLOG = """
SELECT count(*) AS n, extract(epoch FROM now() - min(occurred_at))::float8 AS age
FROM outplan_events WHERE eventsequence > (SELECT published_through FROM outbox_state)
"""


@dataclass(frozen=True, slots=True)
class Backlog:
    """Events committed but not yet settled by the relay: how many, and the oldest one's age (s)."""

    events: int
    oldest_age_seconds: float  # 0.0 when there are none


async def read_backlog(db: Connection | asyncpg.Pool) -> Backlog:
    """The backlog past the relay's checkpoint, read in one statement on ``db`` (a connection or
    a pool). Raises what the driver raises (``TRANSIENT_ERRORS`` when PostgreSQL is away)."""
    row = await db.fetchrow(BACKLOG)
    assert row is not None  # an aggregate without GROUP BY: always one row
    return Backlog(int(row["n"]), float(row["age"] or 0.0))


class OutboxStore:
    """The relay's statements on its own connection ``conn`` (not a pooled one: the advisory lock
    and ``synchronous_commit`` are the session's)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def try_lock(self) -> bool:
        """Become the one relay that publishes; held as long as this connection lives."""
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY))

    async def lock_holder(self) -> int | None:
        """The server process id of the connection holding the relay lock in this database, if any."""
        pid = await self._conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2"
            " AND objsubid = 1 AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())",
            RELAY_LOCK_KEY >> 32,
            RELAY_LOCK_KEY & 0xFFFF_FFFF,
        )
        return None if pid is None else int(pid)

    async def use_async_commit(self) -> None:
        """Let this connection's commits (the checkpoints) return without waiting for the disk
        (``synchronous_commit = off``, PostgreSQL's asynchronous commit).

        A checkpoint lost in a database crash only makes the next relay publish some settled
        events again, with the same ids and bodies: at least once, as always.
        """
        await self._conn.execute("SET synchronous_commit TO off")

    async def checkpoint(self) -> int:
        """The relay's checkpoint: every event up to this sequence is settled (confirmed, returned
        unrouted, or given up after refused re-publishes)."""
        return int(await self._conn.fetchval("SELECT published_through FROM outbox_state"))

    async def after(self, sequence: int, limit: int, *, checkpoint: int | None = None) -> list[LoggedEvent]:
        """The events numbered after ``sequence``, in order, at most ``limit``.

        Numbers follow commit order without gaps (see migration 0004), so what this returns
        always continues what was read before. With ``checkpoint`` the same statement
        saves that checkpoint (see ``save_checkpoint``).
        """
        rows = await self._conn.fetch(_AFTER, sequence, limit, checkpoint)
        return [LoggedEvent.from_record(r) for r in rows]

    async def save_checkpoint(self, up_to: int) -> None:
        """Every event up to this sequence is settled: the next relay starts after it. The
        checkpoint never moves back."""
        await self._conn.execute(
            "UPDATE outbox_state SET published_through = greatest(published_through, $1)", up_to
        )

    async def backlog(self) -> Backlog:
        """How many events wait to be published, and the age in seconds of the oldest."""
        return await read_backlog(self._conn)
