"""What a batch of changes starts from, read in one statement without locks.

The outplans the batch targets, the idempotency records of its message ids, and the database's
clock. Nothing is locked: the batch's write statement checks that none of these outplans
changed in between, and records its message ids only if nobody recorded them first.
"""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from ..domain import Versioned
from .connections import Connection
from .inbox import IdempotencyRecord, Key
from .outplans import to_versioned


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What ``read_snapshot`` found: outplans by id, idempotency records by (customer_id,
    message_id), and PostgreSQL's ``now()`` (aware)."""

    states: dict[UUID, Versioned]  # any customer's, deleted ones too: the handlers decide
    records: dict[Key, IdempotencyRecord]
    moment: datetime  # the time the batch's changes carry


_READ = """
SELECT 'o' AS kind, o.*, NULL::uuid AS p_customer_id, NULL::text AS p_message_id, NULL::text AS p_command,
       NULL::bytea AS p_body_hash, NULL::smallint AS p_status_code, NULL::bytea AS p_reply, now() AS moment
FROM outplans o WHERE o.id = ANY($1::uuid[])
UNION ALL
SELECT 'p', (NULL::outplans).*, p.customer_id, p.message_id, p.command, p.body_hash, p.status_code, p.reply,
       now()
FROM processed_commands p
     JOIN unnest($2::uuid[], $3::text[]) AS k(customer_id, message_id) USING (customer_id, message_id)
UNION ALL
SELECT 't', (NULL::outplans).*, NULL, NULL, NULL, NULL, NULL, NULL, now()
"""


async def read_snapshot(conn: Connection, ids: list[UUID], keys: list[Key]) -> Snapshot:
    """The outplans of ``ids``, the records of ``keys`` and the clock, in one statement."""
    rows = await conn.fetch(_READ, ids, [k[0] for k in keys], [k[1] for k in keys])
    states: dict[UUID, Versioned] = {}
    records: dict[Key, IdempotencyRecord] = {}
    moment = rows[0]["moment"]  # now() is the same in every row, and the last branch always gives one
    for row in rows:
        kind = row["kind"]
        if kind == "o":
            states[row["id"]] = to_versioned(row)
        elif kind == "p":
            key = (row["p_customer_id"], row["p_message_id"])
            records[key] = IdempotencyRecord(
                key, row["p_command"], bytes(row["p_body_hash"]), row["p_status_code"], bytes(row["p_reply"])
            )
    return Snapshot(states, records, moment)
