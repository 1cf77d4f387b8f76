"""Batches are written without locks held: a write based on a stale read is refused whole."""

import asyncio
import json
import uuid

import asyncpg
import pytest

from tests.support.commands import create_body, request
from tests.support.outplans import change, create
from worker.domain import ConcurrentChange, Versioned
from worker.persistence.batch_write import NewEvent
from worker.persistence.inbox import IdempotencyRecord
from worker.persistence.uow import PgUnitOfWork

pytestmark = pytest.mark.integration


def renamed(stored: Versioned, name: str) -> Versioned:
    return Versioned(stored.outplan.model_copy(update={"name": name}), stored.version + 1)


async def rename_elsewhere(pool: asyncpg.Pool, customer_id: uuid.UUID, outplan_id: uuid.UUID) -> None:
    [outcome] = await change(
        pool,
        request(
            "outplan.update_basic_info",
            {"customer_id": customer_id, "id": outplan_id, "name": "theirs", "detail": ""},
        ),
    )
    assert outcome.status_code == 200


@pytest.mark.parametrize(
    "with_event", [True, False], ids=["caught by the event's version", "caught by the row"]
)
async def test_a_write_from_a_stale_read_changes_nothing(
    pool: asyncpg.Pool, customer_id: uuid.UUID, with_event: bool
) -> None:
    [outplan_id] = await create(pool, customer_id)
    message_id = str(uuid.uuid4())
    async with PgUnitOfWork(pool) as uow:
        snapshot = await uow.read([outplan_id], [(customer_id, message_id)])
        await rename_elsewhere(pool, customer_id, outplan_id)  # version 2, written meanwhile
        mine = renamed(snapshot.states[outplan_id], "mine")
        events = (
            [NewEvent("outplan_updated", mine, message_id, mine.outplan.model_dump_json())]
            if with_event
            else []
        )
        record = IdempotencyRecord((customer_id, message_id), "outplan.update_basic_info", b"h", 200, b"{}")
        with pytest.raises(ConcurrentChange):
            await uow.write(
                inserted=[],
                replaced=[mine],
                events=events,
                records=[record],
                read_versions={outplan_id: 1},
                moment=snapshot.moment,
            )
    row = await pool.fetchrow("SELECT name, version FROM outplans WHERE id = $1", outplan_id)
    assert row is not None
    assert (row["name"], row["version"]) == ("theirs", 2)
    assert await pool.fetchval("SELECT count(*) FROM outplan_events WHERE outplan_id = $1", outplan_id) == 2
    assert (
        await pool.fetchval("SELECT count(*) FROM processed_commands WHERE message_id = $1", message_id) == 0
    )


async def test_concurrent_batches_on_one_outplan_all_apply_with_contiguous_versions(
    pool: asyncpg.Pool, customer_id: uuid.UUID
) -> None:
    [outplan_id] = await create(pool, customer_id)
    writers = 12  # separate batches, as from separate worker processes: they collide and run again

    async def update(i: int) -> int:
        [outcome] = await change(
            pool,
            request(
                "outplan.update_basic_info",
                {"customer_id": customer_id, "id": outplan_id, "name": f"w{i}", "detail": ""},
            ),
        )
        return outcome.status_code

    assert await asyncio.gather(*(update(i) for i in range(writers))) == [200] * writers
    versions = [
        r["outplan_version"]
        for r in await pool.fetch(
            "SELECT outplan_version FROM outplan_events WHERE outplan_id = $1 ORDER BY position", outplan_id
        )
    ]
    assert versions == list(range(1, writers + 2))
    stored = await pool.fetchrow("SELECT name, version FROM outplans WHERE id = $1", outplan_id)
    last = await pool.fetchval(
        "SELECT data FROM outplan_events WHERE outplan_id = $1 AND outplan_version = $2",
        outplan_id,
        writers + 1,
    )
    assert stored is not None
    assert stored["version"] == writers + 1 and json.loads(last)["name"] == stored["name"]


async def test_the_same_message_id_from_two_batches_at_once_is_applied_once(
    pool: asyncpg.Pool, customer_id: uuid.UUID
) -> None:
    message_id = str(uuid.uuid4())
    body = create_body(customer_id, name="once")
    outcomes = await asyncio.gather(
        *(change(pool, request("outplan.create", body, message_id)) for _ in range(4))
    )
    replies = {o.reply for [o] in outcomes}
    assert len(replies) == 1 and sorted(o.replayed for [o] in outcomes) == [False, True, True, True]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM outplans WHERE customer_id = $1 AND name = 'once'", customer_id
        )
        == 1
    )
