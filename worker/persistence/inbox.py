"""The idempotency record: which (customer, message_id) was applied, and the reply it got.

Records are read with the batch (``snapshot``) and written with its changes (``changes``).
"""

from uuid import UUID

import asyncpg

Key = tuple[UUID, str]  # (customer_id, message_id)


async def purge_older_than(pool: asyncpg.Pool, hours: float) -> int:
    """Forget idempotency records older than ``hours``; returns how many were removed."""
    status = await pool.execute(
        "DELETE FROM processed_commands WHERE processed_at < now() - make_interval(secs => $1)",
        hours * 3600.0,
    )
    return int(status.split()[-1])
