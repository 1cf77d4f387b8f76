"""Migrations, the repository and the unit of work against a real PostgreSQL."""

import asyncio
import json
import uuid
from importlib.resources import files

import asyncpg
import pytest
from pydantic import SecretStr

from tests.support.commands import create_body, request
from tests.support.outplans import change, create, creating
from worker.app import open_pool
from worker.persistence.migrate import ensure_database, migrate
from worker.persistence.outbox import BACKLOG
from worker.persistence.uow import PgUnitOfWork
from worker.settings import Settings

pytestmark = pytest.mark.integration
MIGRATIONS = [
    "0001_init.sql",
    "0002_published_watermark.sql",
    "0003_write_conflicts.sql",
    "0004_sequence_on_write.sql",
    "0005_trace_context.sql",
]


async def test_migrations_apply_once_and_are_idempotent(fresh_database: str) -> None:
    assert await migrate(fresh_database) == []  # the fixture already migrated it
    conn = await asyncpg.connect(fresh_database)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {
            "outplans",
            "outplan_events",
            "processed_commands",
            "outbox_state",
            "schema_migrations",
        } <= tables
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)
    finally:
        await conn.close()


async def test_migrate_creates_a_missing_database() -> None:
    from tests.conftest import database_url, drop_database_async

    url = database_url(f"outplans_test_{uuid.uuid4().hex[:12]}")
    try:
        assert await migrate(url) == MIGRATIONS
        assert await migrate(url) == []
    finally:
        await drop_database_async(url)


async def test_an_existing_event_log_keeps_its_checkpoint_across_the_upgrade() -> None:
    """0002 replaces the per-event published_at with one checkpoint (0002 called it a watermark):
    the published prefix. 0004 numbers the events not numbered yet, after the others, with the
    configured source."""
    from tests.conftest import database_url, drop_database_async

    url = database_url(f"outplans_test_{uuid.uuid4().hex[:12]}")
    try:
        await ensure_database(url)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute((files("worker.persistence") / "migrations" / "0001_init.sql").read_text())
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, '0001_init.sql')")
            for seq in range(1, 6):  # 1-3 confirmed, 4-5 sequenced but not confirmed, one not sequenced
                await conn.execute(
                    "INSERT INTO outplan_events (event_id, event_type, outplan_id, customer_id,"
                    " outplan_version, occurred_at, data, eventsequence, body, published_at)"
                    " VALUES ($1, 'outplan_created', $2, $2, 1, now(), '{}', $3::bigint, '\\x00',"
                    " CASE WHEN $3::bigint <= 3 THEN now() END)",
                    uuid.uuid4(),
                    uuid.uuid4(),
                    seq,
                )
            late = uuid.uuid4()
            await conn.execute(
                "INSERT INTO outplan_events (event_id, event_type, outplan_id, customer_id, outplan_version,"
                " occurred_at, data) VALUES ($1, 'outplan_created', $1, $1, 1, '2026-11-27T05:06:07.089Z',"
                " '{\"id\":1}')",
                late,
            )
            assert await migrate(url, event_source="upgrade-test") == MIGRATIONS[1:]
            assert await conn.fetchval("SELECT published_through FROM outbox_state") == 3
            assert (
                await conn.fetchval("SELECT n FROM (" + BACKLOG + ") AS b") == 3
            )  # 4 and 5, and the late one
            row = await conn.fetchrow(
                "SELECT eventsequence, body FROM outplan_events WHERE event_id = $1", late
            )
            assert row is not None
            assert row["eventsequence"] == 6
            assert json.loads(row["body"]) == {
                "specversion": "1.0",
                "id": str(late),
                "source": "upgrade-test",
                "type": "outplan_created",
                "subject": str(late),
                "time": "2026-11-27T05:06:07.089000Z",
                "datacontenttype": "application/json",
                "customerid": str(late),
                "outplanversion": 1,
                "eventsequence": 6,
                "data": {"id": 1},
            }
            assert await conn.fetchval("SELECT last_value FROM event_sequence") == 6
        finally:
            await conn.close()
    finally:
        await drop_database_async(url)


async def test_change_event_and_record_commit_together(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    message_id = str(uuid.uuid4())
    [outcome] = await change(
        pool,
        request("outplan.create", create_body(customer_id, name="a"), message_id),
    )
    created = json.loads(outcome.reply)["data"]
    assert outcome.status_code == 201 and created["tm_create"] == created["tm_update"]
    assert created["tm_delete"] == "9999-01-01 00:00:00.000000"
    async with PgUnitOfWork(pool) as uow:
        found = await uow.outplans.get(customer_id, uuid.UUID(created["id"]), include_deleted=False)
    assert found is not None and found.version == 1 and found.outplan.model_dump(mode="json") == created
    events = await pool.fetch(
        "SELECT event_type, outplan_version, correlation_id, data FROM outplan_events WHERE outplan_id = $1",
        found.outplan.id,
    )
    assert [(e["event_type"], e["outplan_version"], e["correlation_id"]) for e in events] == [
        ("outplan_created", 1, message_id)
    ]
    assert json.loads(events[0]["data"]) == created  # the event carries exactly the reply's outplan
    record = await pool.fetchrow(
        "SELECT status_code, reply FROM processed_commands WHERE message_id = $1", message_id
    )
    assert record is not None
    assert (record["status_code"], bytes(record["reply"])) == (201, outcome.reply)


async def test_without_commit_nothing_is_written(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    async with creating(pool, customer_id) as (_, event_id):
        pass  # left without commit: rolled back
    assert await pool.fetchval("SELECT count(*) FROM outplans WHERE customer_id = $1", customer_id) == 0
    assert await pool.fetchval("SELECT count(*) FROM outplan_events WHERE event_id = $1", event_id) == 0


async def test_versions_grow_by_one_and_delete_is_soft(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    [outplan_id] = await create(pool, customer_id)
    update = {"customer_id": customer_id, "id": outplan_id, "name": "b", "detail": "c"}
    one, two, gone, after = await change(
        pool,
        request("outplan.update_basic_info", update),
        request("outplan.update_basic_info", update),
        request("outplan.delete", {"customer_id": customer_id, "id": outplan_id}),
        request("outplan.update_basic_info", update),
    )
    assert [o.status_code for o in (one, two, gone, after)] == [200, 200, 200, 404]
    async with PgUnitOfWork(pool) as uow:
        assert await uow.outplans.get(customer_id, outplan_id, include_deleted=False) is None
        deleted = await uow.outplans.get(customer_id, outplan_id, include_deleted=True)
    assert deleted is not None and deleted.version == 4
    assert deleted.outplan.model_dump(mode="json") == json.loads(gone.reply)["data"]
    versions = await pool.fetch(
        "SELECT outplan_version FROM outplan_events WHERE outplan_id = $1 ORDER BY position", outplan_id
    )
    assert [v["outplan_version"] for v in versions] == [1, 2, 3, 4]
    [again] = await change(pool, request("outplan.delete", {"customer_id": customer_id, "id": outplan_id}))
    assert again.status_code == 404


async def test_another_customer_sees_nothing(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    [outplan_id] = await create(pool, customer_id)
    other = uuid.uuid4()
    outcomes = await change(
        pool,
        request(
            "outplan.update_basic_info", {"customer_id": other, "id": outplan_id, "name": "x", "detail": "y"}
        ),
        request("outplan.delete", {"customer_id": other, "id": outplan_id}),
    )
    assert [o.status_code for o in outcomes] == [404, 404]
    async with PgUnitOfWork(pool) as uow:
        assert await uow.outplans.get(other, outplan_id, include_deleted=True) is None
        assert await uow.outplans.list_live(other, None, 10) == []
        mine = await uow.outplans.get(customer_id, outplan_id, include_deleted=False)
    assert mine is not None and mine.version == 1


async def test_a_repeated_message_id_replays_the_stored_reply(
    pool: asyncpg.Pool, customer_id: uuid.UUID
) -> None:
    missing = {"customer_id": customer_id, "id": uuid.uuid4()}
    [first] = await change(pool, request("outplan.delete", missing, "k"))
    [again] = await change(pool, request("outplan.delete", missing, "k"))
    assert first.status_code == again.status_code == 404 and again.reply == first.reply and again.replayed
    [reused] = await change(pool, request("outplan.delete", {**missing, "id": uuid.uuid4()}, "k"))
    assert reused.status_code == 409


async def test_sql_looking_text_is_stored_verbatim(pool: asyncpg.Pool, customer_id: uuid.UUID) -> None:
    text = "x'); DROP TABLE outplans; --"
    [outplan_id] = await create(pool, customer_id, name=text, detail='ü\n"☎')
    async with PgUnitOfWork(pool) as uow:
        stored = await uow.outplans.get(customer_id, outplan_id, include_deleted=False)
    assert stored is not None and stored.outplan.name == text and stored.outplan.detail == 'ü\n"☎'


async def test_the_workers_pool_plans_its_statements_once_and_keeps_that_across_batches(
    fresh_database: str,
) -> None:
    # Re-planning the batch's statements at every execution cost almost as much as running them.
    pool = await open_pool(Settings(database_url=SecretStr(fresh_database), db_pool_size=1), asyncio.Event())
    try:
        for _ in range(2):  # the same connection, released and taken again by the next batch
            async with pool.acquire() as conn:
                assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    finally:
        await pool.close()
