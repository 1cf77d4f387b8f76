"""The worker on least privilege: a broker user that may read and write but not configure, a
database role granted only deploy/postgres/grants.sql. What works with them works; anything
refused is one ERROR line naming the resource and the permission, and exit 78 at once.

The users and roles are created on the machine's RabbitMQ and PostgreSQL with unique names and
removed at the end (``rabbitmqctl``: these tests run where the broker runs, as CI does).
"""

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from contracts import names as wire
from tests.conftest import AMQP_URL, PG_ADMIN
from tests.support.workers import WorkerNames, WorkerProcess, delete_names, start_worker, worker_command
from worker.client import OutplanClient
from worker.messaging import topology
from worker.settings import Settings

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl beside the broker"),
]

GRANTS = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "grants.sql"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@dataclass
class BrokerUser:
    name: str
    url: str

    def permit(self, configure: str, write: str, read: str) -> None:
        _rabbitmqctl("set_permissions", "-p", "/", self.name, configure, write, read)


@pytest.fixture
def broker_user() -> Iterator[BrokerUser]:
    """A user on the machine's broker that may read and write everything but configure nothing."""
    name, password = f"test-worker-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    _rabbitmqctl("add_user", name, password)
    try:
        user = BrokerUser(name, AMQP_URL.replace("guest:guest@", f"{name}:{password}@"))
        user.permit("^$", ".*", ".*")
        yield user
    finally:
        _rabbitmqctl("delete_user", name)


@pytest.fixture
def names() -> Iterator[WorkerNames]:
    chosen = WorkerNames.fresh()
    yield chosen
    asyncio.run(delete_names(chosen))


async def _declare_as_administrator(chosen: WorkerNames) -> None:
    """What an operator's definitions import does: the topology, declared by another user."""
    settings = Settings(**{k: v for k, v in chosen.__dict__.items()})
    async with await aio_pika.connect(AMQP_URL) as connection:
        await topology.declare(await connection.channel(), settings)


async def _psql_grants(url: str, role: str) -> None:
    """deploy/postgres/grants.sql as an operator runs it: psql, as the schema's owner."""
    done = await asyncio.to_thread(
        subprocess.run,
        ["psql", url, "-q", "-v", f"worker_role={role}", "-f", str(GRANTS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def worker_role(fresh_database: str) -> Iterator[tuple[str, str]]:
    """A login role granted only deploy/postgres/grants.sql on a migrated database of its own;
    yields (its URL, its name). The migration ran as the administrator (the schema's owner)."""
    role = f"test_worker_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        finally:
            await admin.close()
        await _psql_grants(fresh_database, role)

    async def drop() -> None:
        owner = await asyncpg.connect(fresh_database)
        try:
            await owner.execute(f'DROP OWNED BY "{role}"')  # its grants, here and on the database
        finally:
            await owner.close()
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP ROLE "{role}"')
        finally:
            await admin.close()

    asyncio.run(create())
    user_url = fresh_database.replace("://postgres@", f"://{role}@")
    assert user_url != fresh_database, "the tests' PostgreSQL URL must name the user postgres"
    try:
        yield user_url, role
    finally:
        asyncio.run(drop())


def _run_until_exit(worker: WorkerProcess, seconds: float = 20) -> tuple[int, float]:
    """Its exit code and how long it took to exit; a worker still running after ``seconds`` is
    killed and the test fails with its log."""
    started = time.monotonic()
    try:
        code = worker.process.wait(seconds)
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail(f"the worker did not exit within {seconds} s:\n{worker.log()}")
    return code, time.monotonic() - started


def _errors(worker: WorkerProcess) -> list[str]:
    return [str(e["event"]) for e in worker.log_entries() if e.get("level") == "error"]


def test_without_configure_permission_declaring_is_refused_in_one_line_at_once(
    broker_user: BrokerUser, names: WorkerNames, session_database: str, tmp_path: Path
) -> None:
    worker = start_worker(session_database, tmp_path, names, wait=False, amqp_url=broker_user.url)
    code, seconds = _run_until_exit(worker)
    assert code == 78, worker.log()
    assert seconds < 10
    assert "Traceback" not in worker.log()
    [line] = _errors(worker)
    assert line.startswith(
        f"cannot start: RabbitMQ refused exchange.declare on exchange '{names.dead_letter_exchange}'"
    )
    assert "needs configure permission" in line and f"user '{broker_user.name}'" in line
    assert "OUTPLAN_TOPOLOGY=passive" in line


def test_passive_on_a_topology_nobody_declared_names_what_is_missing(
    broker_user: BrokerUser, names: WorkerNames, session_database: str, tmp_path: Path
) -> None:
    worker = start_worker(
        session_database, tmp_path, names, wait=False, amqp_url=broker_user.url, topology="passive"
    )
    code, _ = _run_until_exit(worker)
    assert code == 78, worker.log()
    [line] = _errors(worker)
    assert f"exchange '{names.dead_letter_exchange}' does not exist" in line
    assert "deploy/rabbitmq/definitions.json" in line


async def _create_and_see_its_event(chosen: WorkerNames) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        events = await channel.declare_queue(exclusive=True)
        await events.bind(chosen.event_exchange, routing_key="#")
        client = OutplanClient(connection, exchange=chosen.command_exchange)
        await client.start()
        customer = str(uuid.uuid4())
        reply = await client.send(
            wire.CREATE, {"customer_id": customer, "source": {"type": "tel", "target": "+15559876543"}}
        )
        assert reply.status_code == 201, reply
        async with asyncio.timeout(10):
            async with events.iterator() as received:
                async for message in received:
                    await message.ack()
                    if b'"outplan_created"' in message.body and customer.encode() in message.body:
                        break


def test_passive_with_a_read_write_user_and_the_granted_role_works_end_to_end(
    broker_user: BrokerUser, worker_role: tuple[str, str], names: WorkerNames, tmp_path: Path
) -> None:
    asyncio.run(_declare_as_administrator(names))
    user_url, _ = worker_role
    worker = start_worker(user_url, tmp_path, names, amqp_url=broker_user.url, topology="passive")
    try:
        asyncio.run(_create_and_see_its_event(names))
    finally:
        assert worker.stop() == 0, worker.log()
    assert _errors(worker) == [], worker.log()


def test_a_role_lacking_a_grant_is_refused_in_one_line_naming_it(
    worker_role: tuple[str, str], names: WorkerNames, fresh_database: str, tmp_path: Path
) -> None:
    user_url, role = worker_role

    async def revoke() -> None:
        owner = await asyncpg.connect(fresh_database)
        try:
            await owner.execute(f'REVOKE INSERT ON outplan_events FROM "{role}"')
        finally:
            await owner.close()

    asyncio.run(revoke())
    worker = start_worker(user_url, tmp_path, names, wait=False)
    code, seconds = _run_until_exit(worker)
    assert code == 78, worker.log()
    assert seconds < 10
    assert "Traceback" not in worker.log()
    [line] = _errors(worker)
    assert (
        f"PostgreSQL role '{role}' lacks privileges the worker needs: INSERT on table outplan_events" in line
    )
    assert f"-v worker_role={role}" in line


def test_a_publish_refused_while_running_stops_the_worker_in_one_line(
    broker_user: BrokerUser, names: WorkerNames, fresh_database: str, tmp_path: Path
) -> None:
    """Write permission on everything but the events exchange: the first event refused stops it.

    A database of its own: on the session's, another worker's relay may hold the lock and publish."""
    asyncio.run(_declare_as_administrator(names))
    events = names.event_exchange.replace(".", r"\.")
    broker_user.permit("^$", f"^(?!{events}$).*", ".*")
    worker = start_worker(fresh_database, tmp_path, names, amqp_url=broker_user.url, topology="passive")

    async def create() -> None:
        async with await aio_pika.connect(AMQP_URL) as connection:
            client = OutplanClient(connection, exchange=names.command_exchange)
            await client.start()
            body = {"customer_id": str(uuid.uuid4()), "source": {"type": "tel", "target": "+15559876543"}}
            await client.send(wire.CREATE, body)

    asyncio.run(create())
    code, seconds = _run_until_exit(worker)
    assert code == 78, worker.log()
    assert seconds < 10
    assert "Traceback" not in worker.log()
    [line] = _errors(worker)
    assert line.startswith(f"stopping: RabbitMQ refused basic.publish on exchange '{names.event_exchange}'")
    assert "needs write permission" in line
    assert not worker.log_events("relay interrupted; retrying")


def test_tail_without_configure_permission_says_what_it_needs(
    broker_user: BrokerUser, names: WorkerNames
) -> None:
    """tail listens through a queue of its own: the broker names it, and declaring it needs configure."""
    asyncio.run(_declare_as_administrator(names))
    done = subprocess.run(
        [*worker_command(), "tail"],
        env={**os.environ, **names.env(), "OUTPLAN_AMQP_URL": broker_user.url, "OUTPLAN_TOPOLOGY": "passive"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 78, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("tail: RabbitMQ refused queue.declare on a server-named queue (amq.gen-…)")
    assert "needs configure permission on it" in line


def test_a_privilege_revoked_while_running_stops_the_worker_in_one_line(
    worker_role: tuple[str, str], names: WorkerNames, fresh_database: str, tmp_path: Path
) -> None:
    """The command that met the refusal is neither answered 500 nor dead-lettered: it stays queued."""
    user_url, role = worker_role
    worker = start_worker(user_url, tmp_path, names)

    async def revoke_then_create() -> None:
        owner = await asyncpg.connect(fresh_database)
        try:
            await owner.execute(f'REVOKE INSERT ON outplan_events FROM "{role}"')
        finally:
            await owner.close()
        async with await aio_pika.connect(AMQP_URL) as connection:
            client = OutplanClient(connection, exchange=names.command_exchange)
            await client.start()
            body = {"customer_id": str(uuid.uuid4()), "source": {"type": "tel", "target": "+15559876543"}}
            with pytest.raises(TimeoutError):
                await client.send(wire.CREATE, body, timeout=3)

    asyncio.run(revoke_then_create())
    code, seconds = _run_until_exit(worker)
    assert code == 78, worker.log()
    assert seconds < 10
    assert "Traceback" not in worker.log()
    [line] = _errors(worker)
    assert line.startswith(
        "stopping: PostgreSQL denied a privilege (permission denied for table outplan_events)"
    )
    assert not worker.log_events("command failed")  # not taken for a bug of the command

    async def still_queued() -> int:
        async with await aio_pika.connect(AMQP_URL) as connection:
            queue = await (await connection.channel()).declare_queue(names.command_queue, passive=True)
            return int(queue.declaration_result.message_count or 0)

    assert asyncio.run(still_queued()) == 1
