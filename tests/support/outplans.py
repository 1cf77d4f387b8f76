"""Writing outplans through the real service path, for tests that need rows in the database."""

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from contracts import CreateOutplan
from contracts.timefmt import format_time
from tests.support.commands import create_body, request
from worker.handlers import Context, create_outplan
from worker.persistence.batch_write import NewEvent
from worker.persistence.uow import PgUnitOfWork
from worker.requests import Request
from worker.service import Outcome, Service


async def change(pool: asyncpg.Pool, *requests: Request) -> list[Outcome]:
    """One batch, as the worker runs it."""
    return await Service(lambda **kw: PgUnitOfWork(pool, **kw)).change(list(requests))


async def create(
    pool: asyncpg.Pool, customer_id: uuid.UUID, count: int = 1, **fields: Any
) -> list[uuid.UUID]:
    """``count`` outplans in one transaction: they share one tm_create."""
    outcomes = await change(
        pool,
        *(request("outplan.create", create_body(customer_id, **fields)) for _ in range(count)),
    )
    assert all(o.status_code == 201 for o in outcomes)
    return [uuid.UUID(json.loads(o.reply)["data"]["id"]) for o in outcomes]


@asynccontextmanager
async def creating(
    pool: asyncpg.Pool, customer_id: uuid.UUID
) -> AsyncIterator[tuple[PgUnitOfWork, uuid.UUID]]:
    """An open transaction that has written an outplan and its event: the unit of work and the
    event's id. Leaving it without ``commit()`` rolls the write back."""
    async with PgUnitOfWork(pool) as uow:
        await uow.begin()
        cmd = CreateOutplan.model_validate(create_body(customer_id), strict=False)
        now = (await uow.read([], [])).moment
        stored = create_outplan(cmd, None, Context(format_time(now))).stored
        event = NewEvent("outplan_created", stored, None, stored.outplan.model_dump_json())
        [written] = await uow.write(
            inserted=[stored], replaced=[], events=[event], records=[], read_versions={}, moment=now
        )
        yield uow, uuid.UUID(written.event_id)


async def create_committed(pool: asyncpg.Pool, customer_id: uuid.UUID) -> uuid.UUID:
    """An outplan and its event written in a transaction of their own, committed: the event's id."""
    async with creating(pool, customer_id) as (uow, event_id):
        await uow.commit()
    return event_id
