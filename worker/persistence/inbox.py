"""The idempotency record: which (customer, message_id) was applied, and the reply it got."""

from uuid import UUID

import asyncpg

from ..domain import StoredReply


class ProcessedCommands:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def claim(
        self, customer_id: UUID, message_id: str, command: str, body_hash: bytes
    ) -> StoredReply | None:
        """Claim the key for this transaction; if it was taken, what is stored for it.

        A concurrent claim of the same key waits here until the first transaction ends,
        so a duplicate in flight never applies twice.
        """
        claimed = await self._conn.fetchval(
            "INSERT INTO processed_commands (customer_id, message_id, command, body_hash)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            customer_id, message_id, command, body_hash,
        )
        if claimed:
            return None
        row = await self._conn.fetchrow(
            "SELECT command, body_hash, status_code, reply FROM processed_commands"
            " WHERE customer_id = $1 AND message_id = $2",
            customer_id, message_id,
        )
        if row is None:  # purged between the two statements: treat as taken by nobody
            return await self.claim(customer_id, message_id, command, body_hash)
        return StoredReply(
            command=row["command"],
            body_hash=bytes(row["body_hash"]),
            status_code=row["status_code"],
            reply=row["reply"],
        )

    async def remember(self, customer_id: UUID, message_id: str, status_code: int, reply: bytes) -> None:
        await self._conn.execute(
            "UPDATE processed_commands SET status_code = $3, reply = $4"
            " WHERE customer_id = $1 AND message_id = $2",
            customer_id, message_id, status_code, reply,
        )


async def purge_older_than(pool: asyncpg.Pool, hours: float) -> int:
    """Forget idempotency records older than ``hours``; returns how many were removed."""
    status = await pool.execute(
        "DELETE FROM processed_commands WHERE processed_at < now() - make_interval(secs => $1)",
        hours * 3600.0,
    )
    return int(status.split()[-1])
