"""Migrations, the repository and the unit of work against a real PostgreSQL."""

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from contracts import CreateOutplan, UpdateBasicInfo
from worker.persistence.migrate import migrate
from worker.persistence.uow import PgUnitOfWork

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(session_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(session_database, min_size=1, max_size=4)
    yield pool
    await pool.close()


def new_create(customer_id: uuid.UUID, **fields: object) -> CreateOutplan:
    return CreateOutplan.model_validate(
        {"customer_id": customer_id, "source": {"type": "tel", "target": "+15559876543"}, **fields}, strict=False
    )


async def test_migrations_apply_once_and_are_idempotent(fresh_database: str) -> None:
    assert await migrate(fresh_database) == []  # the fixture already migrated it
    conn = await asyncpg.connect(fresh_database)
    try:
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"outplans", "outplan_events", "processed_commands", "schema_migrations"} <= tables
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await conn.close()


async def test_migrate_creates_a_missing_database() -> None:
    from tests.conftest import database_url, drop_database_async

    url = database_url(f"outplans_test_{uuid.uuid4().hex[:12]}")
    try:
        assert await migrate(url) == ["0001_init.sql"]
        assert await migrate(url) == []
    finally:
        await drop_database_async(url)


async def test_change_event_and_record_commit_together(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    outplan_id = uuid.uuid4()
    async with PgUnitOfWork(pool) as uow:
        stored = await uow.outplans.add(outplan_id, new_create(customer_id, name="a"))
        await uow.events.record("outplan_created", stored, "m-1")
        await uow.commit()
    assert stored.version == 1 and stored.outplan.tm_create == stored.outplan.tm_update
    assert stored.outplan.tm_delete == "9999-01-01 00:00:00.000000"
    async with PgUnitOfWork(pool) as uow:
        found = await uow.outplans.get(customer_id, outplan_id, include_deleted=False)
    assert found == stored
    events = await pool.fetch("SELECT event_type, outplan_version FROM outplan_events WHERE outplan_id = $1", outplan_id)
    assert [(e["event_type"], e["outplan_version"]) for e in events] == [("outplan_created", 1)]


async def test_without_commit_nothing_is_written(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    outplan_id = uuid.uuid4()
    async with PgUnitOfWork(pool) as uow:
        stored = await uow.outplans.add(outplan_id, new_create(customer_id))
        await uow.events.record("outplan_created", stored, None)
    assert await pool.fetchval("SELECT count(*) FROM outplans WHERE id = $1", outplan_id) == 0
    assert await pool.fetchval("SELECT count(*) FROM outplan_events WHERE outplan_id = $1", outplan_id) == 0


async def test_versions_grow_by_one_and_delete_is_soft(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    outplan_id = uuid.uuid4()
    async with PgUnitOfWork(pool) as uow:
        await uow.outplans.add(outplan_id, new_create(customer_id))
        update = UpdateBasicInfo(customer_id=customer_id, id=outplan_id, name="b", detail="c")
        assert (await uow.outplans.update_basic_info(update)).version == 2  # type: ignore[union-attr]
        deleted = await uow.outplans.delete(customer_id, outplan_id)
        assert deleted is not None and deleted.version == 3
        assert deleted.outplan.tm_delete != "9999-01-01 00:00:00.000000"
        assert await uow.outplans.get(customer_id, outplan_id, include_deleted=False) is None
        assert await uow.outplans.get(customer_id, outplan_id, include_deleted=True) == deleted
        assert await uow.outplans.update_basic_info(update) is None  # a deleted outplan does not change
        assert await uow.outplans.delete(customer_id, outplan_id) is None
        await uow.commit()


async def test_another_customer_sees_nothing(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    outplan_id, other = uuid.uuid4(), uuid.uuid4()
    async with PgUnitOfWork(pool) as uow:
        await uow.outplans.add(outplan_id, new_create(customer_id))
        assert await uow.outplans.get(other, outplan_id, include_deleted=True) is None
        assert await uow.outplans.update_basic_info(
            UpdateBasicInfo(customer_id=other, id=outplan_id, name="x", detail="y")) is None
        assert await uow.outplans.delete(other, outplan_id) is None
        assert await uow.outplans.list_live(other, None, 10) == []
        await uow.commit()


async def test_the_idempotency_claim_is_taken_once(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    async with PgUnitOfWork(pool) as uow:
        assert await uow.inbox.claim(customer_id, "k", "outplan.delete", b"h") is None
        await uow.inbox.remember(customer_id, "k", 404, b'{"status_code":404}')
        await uow.commit()
    async with PgUnitOfWork(pool) as uow:
        stored = await uow.inbox.claim(customer_id, "k", "outplan.delete", b"h")
    assert stored is not None and stored.status_code == 404 and stored.reply == b'{"status_code":404}'


async def test_sql_looking_text_is_stored_verbatim(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    text = "x'); DROP TABLE outplans; --"
    async with PgUnitOfWork(pool) as uow:
        stored = await uow.outplans.add(uuid.uuid4(), new_create(customer_id, name=text, detail="ü\n\"☎"))
        await uow.commit()
    assert stored.outplan.name == text and stored.outplan.detail == "ü\n\"☎"
