"""The inbox: one idempotency record per applied command (table ``processed_commands``).

Records are read with the batch (``snapshot``) and written with its changes, in the same statement
(``batch_write``); a command whose record exists is answered from it instead of applied again.
"""

from dataclasses import dataclass
from uuid import UUID

import asyncpg

Key = tuple[UUID, str]  # (customer_id, message_id)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """Which command a (customer, message_id) was applied as, and the reply it got (a row of
    ``processed_commands``)."""

    key: Key
    command: str  # the command name, e.g. ``outplan.create``
    body_hash: bytes  # the request's fingerprint (what it means; ``worker.requests.fingerprint``)
    status_code: int
    reply: bytes  # the reply's exact JSON body, sent again to a repeat


async def purge_older_than(pool: asyncpg.Pool, hours: float) -> int:
    """Forget idempotency records older than ``hours``; returns how many were removed."""
    status = await pool.execute(
        "DELETE FROM processed_commands WHERE processed_at < now() - make_interval(secs => $1)",
        hours * 3600.0,
    )
    return int(status.split()[-1])
