"""Paging over 250 outplans, 100 of which share one tm_create: no skip, no repeat."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from contracts import ListOutplans
from contracts.timefmt import format_time
from tests.support.commands import request
from tests.support.outplans import change, create
from worker import paging
from worker.handlers import list_outplans
from worker.persistence.uow import PgUnitOfWork

pytestmark = pytest.mark.integration


async def add(pool: asyncpg.Pool, customer_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    """``count`` outplans in one transaction: they all share one tm_create (now())."""
    return await create(pool, customer_id, count)


async def page(pool: asyncpg.Pool, customer_id: uuid.UUID, size: int, token: str) -> dict[str, Any]:
    cmd = ListOutplans(customer_id=customer_id, page_size=size, page_token=token)
    async with PgUnitOfWork(pool) as uow:
        reply = await list_outplans(cmd, uow)
    data = reply.model_dump(mode="json")["data"]
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("size", [7, 100])
async def test_paging_never_skips_or_repeats(pool: asyncpg.Pool, customer_id: uuid.UUID, size: int) -> None:
    older = []
    for _ in range(75):  # 75 with distinct times
        older += await add(pool, customer_id, 1)
    tied = await add(pool, customer_id, 100)  # 100 sharing one tm_create
    newer = []
    for _ in range(75):
        newer += await add(pool, customer_id, 1)
    await add(pool, uuid.uuid4(), 5)  # another customer's outplans never show up

    seen: list[dict[str, str]] = []
    token, pages = "", 0
    while True:
        data = await page(pool, customer_id, size, token)
        seen += data["result"]
        pages += 1
        token = data["next_page_token"]
        if token == "":
            break
    ids = [uuid.UUID(o["id"]) for o in seen]
    assert len(ids) == 250 and len(set(ids)) == 250
    assert set(ids) == set(older) | set(tied) | set(newer)
    assert pages == -(-250 // size)
    stamps = [o["tm_create"] for o in seen]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert set(ids[:75]) == set(newer)
    assert all(o["customer_id"] == str(customer_id) for o in seen)


async def test_deleted_outplans_are_not_listed(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    keep, gone = await add(pool, customer_id, 2)
    [deleted] = await change(pool, request("outplan.delete", {"customer_id": customer_id, "id": gone}))
    assert deleted.status_code == 200
    data = await page(pool, customer_id, 100, "")
    assert [o["id"] for o in data["result"]] == [str(keep)]


async def test_a_bare_tm_create_token_pages_like_the_tutorial(
    pool: asyncpg.Pool, customer_id: uuid.UUID
) -> None:
    first = await add(pool, customer_id, 1)
    await add(pool, customer_id, 1)
    newest = (await page(pool, customer_id, 1, ""))["result"][0]
    data = await page(pool, customer_id, 10, newest["tm_create"])
    assert [o["id"] for o in data["result"]] == [str(first[0])]
    assert json.dumps(data["next_page_token"]) == '""'


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime.max.replace(tzinfo=UTC), 3),  # sent as 'infinity': everything is older
        (datetime(9999, 12, 31, 23, 59, 59, 999998, tzinfo=UTC), 3),
        (datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC), 0),
        (datetime.min.replace(tzinfo=UTC), 0),  # sent as '-infinity': nothing is older
    ],
)
@pytest.mark.parametrize("with_id", [True, False])
async def test_the_extreme_positions_a_token_can_name_are_queried(
    pool: asyncpg.Pool,
    customer_id: uuid.UUID,
    moment: datetime,
    expected: int,
    with_id: bool,
) -> None:
    await add(pool, customer_id, 3)
    token = paging.encode(moment, uuid.UUID(int=0)) if with_id else format_time(moment)
    data = await page(pool, customer_id, 10, token)
    assert len(data["result"]) == expected
