"""RabbitMQ and PostgreSQL really stopped mid-stream: the worker waits, reconnects and carries on."""

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import COMMANDS, RATE, ready, report
from tests.faults.traffic import Traffic
from tests.support.workers import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.timeout(400)]


async def run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, f"{command}: {output.decode(errors='replace')}"


def pg_cluster(action: str, *extra: str) -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, *extra]


async def queue_depth(queue: str) -> tuple[int, int]:
    """(ready, unacknowledged) messages of a queue, from rabbitmqctl."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        "list_queues",
        "name",
        "messages_ready",
        "messages_unacknowledged",
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    for line in output.decode().splitlines():
        parts = line.split()
        if parts and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {queue} not listed")


async def rabbit_ready() -> None:
    await run("rabbitmqctl", "-q", "await_startup")


@pytest.fixture
async def rabbit_restored() -> object:
    yield None
    await run("rabbitmqctl", "-q", "start_app")  # whatever happened in the test, leave it running
    await rabbit_ready()


@pytest.fixture
async def postgres_restored() -> object:
    yield None
    if not Path("/var/run/postgresql/.s.PGSQL.5432").exists():
        await run(*pg_cluster("start"))


async def test_rabbitmq_restarted_mid_stream(
    workers: Callable[..., WorkerProcess], traffic: Traffic, fresh_database: str, rabbit_restored: object
) -> None:
    worker = workers()
    await ready(worker)
    await traffic.open()

    async def on_progress(sent: int) -> None:
        if sent == COMMANDS // 2:
            await run("rabbitmqctl", "-q", "stop_app")
            traffic.ledger.faults += 1
            await asyncio.sleep(2)
            await run("rabbitmqctl", "-q", "start_app")
            await rabbit_ready()

    await traffic.run(COMMANDS, RATE, on_progress)
    await traffic.settle(timeout=120)
    figures = await traffic.ledger.audit(fresh_database, traffic.customers)
    report("RabbitMQ restarted (stop_app / start_app)", figures, [worker])
    assert worker.process.poll() is None  # it rode it out
    assert await asyncio.to_thread(worker.stop) == 0


@pytest.mark.parametrize("outage", ["restart", "down for 10 s"])
async def test_postgresql_restarted_or_unreachable(
    outage: str,
    workers: Callable[..., WorkerProcess],
    traffic: Traffic,
    fresh_database: str,
    postgres_restored: object,
) -> None:
    worker = workers()
    await ready(worker)
    await traffic.open()

    held: list[tuple[int, int]] = []

    async def outage_now() -> None:
        if outage == "restart":
            await run(*pg_cluster("restart", "-m", "fast"))
            return
        await run(*pg_cluster("stop", "-m", "fast"))
        await asyncio.sleep(8)
        held.append(await queue_depth(worker.names.command_queue))
        await asyncio.sleep(2)
        await run(*pg_cluster("start"))

    faults: list[asyncio.Task[None]] = []

    async def on_progress(sent: int) -> None:
        if sent == COMMANDS // 2:  # the producer keeps sending while the database is away
            traffic.ledger.faults += 1
            faults.append(asyncio.create_task(outage_now()))

    await traffic.run(COMMANDS, RATE, on_progress)
    await asyncio.gather(*faults)
    await traffic.settle(timeout=120)
    figures = await traffic.ledger.audit(fresh_database, traffic.customers)
    report(f"PostgreSQL {outage}", figures, [worker])
    assert worker.process.poll() is None
    if held:  # while the database was down the worker held at most a prefetch of messages
        ready_count, unacked = held[0]
        print(f"  during the outage: {ready_count} ready in the queue, {unacked} held by the worker")
        assert unacked <= Settings().prefetch and ready_count > 0
    dead = worker.log().count("dead-lettered")
    assert dead == 0, "a valid command was dead-lettered during the outage"
    assert await asyncio.to_thread(worker.stop) == 0
