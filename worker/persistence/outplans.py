"""SQL for the outplans table; rows come back as ``Versioned`` contract outplans."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from contracts import CreateOutplan, Outplan, Source, UpdateBasicInfo, UpdateDialInfo
from contracts.timefmt import format_time

from ..domain import PagePosition, Versioned

_COLUMNS = (
    "id, customer_id, name, detail, source_type, source_target, source_target_name, source_name,"
    " source_detail, dial_timeout, try_interval, max_try_count_0, max_try_count_1,"
    " max_try_count_2, max_try_count_3, max_try_count_4, version, tm_create, tm_update, tm_delete"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_versioned(row: asyncpg.Record) -> Versioned:
    outplan = Outplan(
        id=row["id"],
        customer_id=row["customer_id"],
        name=row["name"],
        detail=row["detail"],
        source=Source.model_construct(
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


def _dial_values(cmd: CreateOutplan | UpdateDialInfo) -> tuple[Any, ...]:
    s = cmd.source
    return (
        s.type, s.target, s.target_name, s.name, s.detail, cmd.dial_timeout, cmd.try_interval,
        cmd.max_try_count_0, cmd.max_try_count_1, cmd.max_try_count_2, cmd.max_try_count_3,
        cmd.max_try_count_4,
    )


class OutplanRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, outplan_id: UUID, cmd: CreateOutplan) -> Versioned:
        row = await self._conn.fetchrow(
            f"INSERT INTO outplans ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
            " $11, $12, $13, $14, $15, $16, 1, now(), now(), NULL)"
            f" RETURNING {_COLUMNS}",
            outplan_id, cmd.customer_id, cmd.name, cmd.detail, *_dial_values(cmd),
        )
        return to_versioned(row)

    async def get(self, customer_id: UUID, outplan_id: UUID, *, include_deleted: bool) -> Versioned | None:
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM outplans WHERE id = $1 AND customer_id = $2"
            " AND ($3 OR tm_delete IS NULL)",
            outplan_id, customer_id, include_deleted,
        )
        return None if row is None else to_versioned(row)

    # Each change is one UPDATE on a live row of this customer: the row lock serialises
    # concurrent writers and the version grows by exactly one per change.
    async def update_basic_info(self, cmd: UpdateBasicInfo) -> Versioned | None:
        row = await self._conn.fetchrow(
            "UPDATE outplans SET name = $3, detail = $4, version = version + 1, tm_update = now()"
            " WHERE id = $1 AND customer_id = $2 AND tm_delete IS NULL"
            f" RETURNING {_COLUMNS}",
            cmd.id, cmd.customer_id, cmd.name, cmd.detail,
        )
        return None if row is None else to_versioned(row)

    async def update_dial_info(self, cmd: UpdateDialInfo) -> Versioned | None:
        row = await self._conn.fetchrow(
            "UPDATE outplans SET source_type = $3, source_target = $4, source_target_name = $5,"
            " source_name = $6, source_detail = $7, dial_timeout = $8, try_interval = $9,"
            " max_try_count_0 = $10, max_try_count_1 = $11, max_try_count_2 = $12,"
            " max_try_count_3 = $13, max_try_count_4 = $14, version = version + 1, tm_update = now()"
            " WHERE id = $1 AND customer_id = $2 AND tm_delete IS NULL"
            f" RETURNING {_COLUMNS}",
            cmd.id, cmd.customer_id, *_dial_values(cmd),
        )
        return None if row is None else to_versioned(row)

    async def delete(self, customer_id: UUID, outplan_id: UUID) -> Versioned | None:
        row = await self._conn.fetchrow(
            "UPDATE outplans SET tm_delete = now(), tm_update = now(), version = version + 1"
            " WHERE id = $1 AND customer_id = $2 AND tm_delete IS NULL"
            f" RETURNING {_COLUMNS}",
            outplan_id, customer_id,
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
                customer_id, limit,
            )
        else:
            moment = _EPOCH + timedelta(microseconds=after.tm_create_us)
            if after.id is None:
                rows = await self._conn.fetch(
                    f"SELECT {_COLUMNS} FROM outplans WHERE customer_id = $1 AND tm_delete IS NULL"
                    " AND tm_create < $2 ORDER BY tm_create DESC, id DESC LIMIT $3",
                    customer_id, moment, limit,
                )
            else:
                rows = await self._conn.fetch(
                    f"SELECT {_COLUMNS} FROM outplans WHERE customer_id = $1 AND tm_delete IS NULL"
                    " AND (tm_create, id) < ($2, $3) ORDER BY tm_create DESC, id DESC LIMIT $4",
                    customer_id, moment, after.id, limit,
                )
        return [(to_versioned(row), row["tm_create"]) for row in rows]
