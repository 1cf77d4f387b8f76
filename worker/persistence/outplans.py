"""SQL for the outplans table; rows come back as ``Versioned`` contract outplans."""

from datetime import datetime
from uuid import UUID

import asyncpg

from contracts import Outplan, StoredSource
from contracts.timefmt import format_time

from ..domain import PagePosition, Versioned
from .connections import Connection

_COLUMNS = (
    "id, customer_id, name, detail, source_type, source_target, source_target_name, source_name,"
    " source_detail, dial_timeout, try_interval, max_try_count_0, max_try_count_1,"
    " max_try_count_2, max_try_count_3, max_try_count_4, version, tm_create, tm_update, tm_delete"
)


def to_versioned(row: asyncpg.Record) -> Versioned:
    """A row of ``outplans`` as a ``Versioned`` contract outplan: times in the tutorial's format,
    a NULL ``tm_delete`` as ``9999-01-01 00:00:00.000000``."""
    # Rows were validated on their way in: building the model without validating it again
    # halves the cost of reading a batch.
    outplan = Outplan.model_construct(
        id=row["id"],
        customer_id=row["customer_id"],
        name=row["name"],
        detail=row["detail"],
        source=StoredSource.model_construct(
            type=row["source_type"],
            target=row["source_target"],
            target_name=row["source_target_name"],
            name=row["source_name"],
            detail=row["source_detail"],
        ),
        dial_timeout=row["dial_timeout"],
        try_interval=row["try_interval"],
        max_try_count_0=row["max_try_count_0"],
        max_try_count_1=row["max_try_count_1"],
        max_try_count_2=row["max_try_count_2"],
        max_try_count_3=row["max_try_count_3"],
        max_try_count_4=row["max_try_count_4"],
        tm_create=format_time(row["tm_create"]),
        tm_update=format_time(row["tm_update"]),
        tm_delete=format_time(row["tm_delete"]),
    )
    return Versioned(outplan=outplan, version=row["version"])


COLUMNS = _COLUMNS
MUTABLE = _COLUMNS.split(", ")[2:]  # all but id and customer_id


class OutplanRepository:
    """Statements on the ``outplans`` table, on the connection ``conn`` of a unit of work."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def lock(self, ids: list[UUID]) -> None:
        """Row locks on these outplans (any customer, deleted too), taken in id order."""
        if ids:
            await self._conn.execute(
                "SELECT FROM outplans WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", sorted(set(ids))
            )

    async def get(self, customer_id: UUID, outplan_id: UUID, *, include_deleted: bool) -> Versioned | None:
        """The outplan if it is ``customer_id``'s and live (or deleted, with ``include_deleted``)."""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM outplans WHERE id = $1 AND customer_id = $2"
            " AND ($3 OR tm_delete IS NULL)",
            outplan_id,
            customer_id,
            include_deleted,
        )
        return None if row is None else to_versioned(row)

    async def list_live(
        self, customer_id: UUID, after: PagePosition | None, limit: int
    ) -> list[tuple[Versioned, datetime]]:
        """Live outplans, newest first, strictly after ``after``; with each its raw tm_create."""
        if after is None:
            rows = await self._conn.fetch(
                f"SELECT {_COLUMNS} FROM outplans WHERE customer_id = $1 AND tm_delete IS NULL"
                " ORDER BY tm_create DESC, id DESC LIMIT $2",
                customer_id,
                limit,
            )
        else:
            moment = after.tm_create
            if after.id is None:
                rows = await self._conn.fetch(
                    f"SELECT {_COLUMNS} FROM outplans WHERE customer_id = $1 AND tm_delete IS NULL"
                    " AND tm_create < $2 ORDER BY tm_create DESC, id DESC LIMIT $3",
                    customer_id,
                    moment,
                    limit,
                )
            else:
                rows = await self._conn.fetch(
                    f"SELECT {_COLUMNS} FROM outplans WHERE customer_id = $1 AND tm_delete IS NULL"
                    " AND (tm_create, id) < ($2, $3) ORDER BY tm_create DESC, id DESC LIMIT $4",
                    customer_id,
                    moment,
                    after.id,
                    limit,
                )
        return [(to_versioned(row), row["tm_create"]) for row in rows]
