"""The idempotency record: which (customer, message_id) was applied, and the reply it got."""

from datetime import datetime
from uuid import UUID

import asyncpg

from ..domain import StoredReply

Key = tuple[UUID, str]  # (customer_id, message_id)


class ProcessedCommands:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def claim(self, claims: list[tuple[Key, str, bytes]]) -> tuple[set[Key], datetime | None]:
        """Claim keys for this transaction: returns those claimed, and the transaction's time.

        A key claimed by a concurrent transaction makes this wait until that one ends, so a
        duplicate in flight is never applied twice.
        """
        rows = await self._conn.fetch(
            "INSERT INTO processed_commands (customer_id, message_id, command, body_hash)"
            " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[])"
            " ON CONFLICT DO NOTHING RETURNING customer_id, message_id, processed_at",
            [k[0] for k, _, _ in claims], [k[1] for k, _, _ in claims],
            [c for _, c, _ in claims], [h for _, _, h in claims],
        )
        return {(r["customer_id"], r["message_id"]) for r in rows}, (rows[0]["processed_at"] if rows else None)

    async def stored(self, keys: list[Key]) -> dict[Key, StoredReply]:
        rows = await self._conn.fetch(
            "SELECT p.customer_id, p.message_id, p.command, p.body_hash, p.status_code, p.reply"
            " FROM processed_commands p JOIN unnest($1::uuid[], $2::text[]) AS k(customer_id, message_id)"
            " USING (customer_id, message_id)",
            [k[0] for k in keys], [k[1] for k in keys],
        )
        return {
            (r["customer_id"], r["message_id"]): StoredReply(r["command"], bytes(r["body_hash"]), r["status_code"],
                                                             r["reply"])
            for r in rows
        }


async def purge_older_than(pool: asyncpg.Pool, hours: float) -> int:
    """Forget idempotency records older than ``hours``; returns how many were removed."""
    status = await pool.execute(
        "DELETE FROM processed_commands WHERE processed_at < now() - make_interval(secs => $1)",
        hours * 3600.0,
    )
    return int(status.split()[-1])
