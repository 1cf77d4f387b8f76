"""The cluster suite: servers of its own (``tests/support/cluster.py``), workers and traffic on them.

It runs only when the marker expression names it (``pytest -m cluster``), since it starts five
servers and takes minutes: a plain ``pytest`` deselects it. The RabbitMQ cluster is started once
for the session; each test gets a PostgreSQL pair of its own (a failover leaves it one server short).
"""

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.faults.ledger import Figures
from tests.faults.traffic import Traffic
from tests.support.cluster import PgPair, RabbitCluster, remove
from tests.support.workers import WorkerNames, WorkerProcess, start_worker, worker_command
from worker.client import connect_when_ready
from worker.messaging.brokers import connect_first
from worker.persistence.migrate import migrate

RATE = float(os.environ.get("OUTPLAN_CLUSTER_RATE", "100"))  # commands per second, steady
QUORUM = {"x-queue-type": "quorum"}  # the ledger's own queues must outlive a node too


@pytest.fixture(scope="session")
def cluster_base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="outplan-cluster-"))
    base.chmod(0o755)  # the servers run as their own users and must reach their folders
    yield base
    remove(base)


@pytest.fixture(scope="session")
def rabbit(cluster_base: Path) -> Iterator[RabbitCluster]:
    cluster = RabbitCluster.create(cluster_base / "rabbit")
    try:
        asyncio.run(cluster.start())
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres(cluster_base: Path) -> Iterator[PgPair]:
    folder = cluster_base / f"pg-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    folder.chmod(0o755)
    pair = PgPair.create(folder)
    try:
        asyncio.run(pair.start())
        yield pair
    finally:
        pair.stop()
        remove(folder)


@pytest.fixture
def database(postgres: PgPair) -> str:
    """A migrated database on the pair, by its multi-host URL (the one the worker is given)."""
    url = postgres.url("outplans")
    asyncio.run(migrate(url))
    return url


@pytest.fixture
def names() -> WorkerNames:
    return WorkerNames.fresh()


@pytest.fixture
def workers(
    database: str, rabbit: RabbitCluster, names: WorkerNames, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """``start(**settings)``: a worker on the pair and on all three nodes; all are killed at the end."""
    started: list[WorkerProcess] = []

    def start(**settings: str) -> WorkerProcess:
        worker = start_worker(
            database,
            tmp_path,
            names,
            wait=False,
            launcher=worker_command,
            **{"amqp_url": ",".join(rabbit.urls), **settings},
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture
async def traffic(
    rabbit: RabbitCluster, names: WorkerNames, request: pytest.FixtureRequest
) -> AsyncIterator[Traffic]:
    """The fault suite's producer and subscriber, on the cluster (its nodes in reverse order, so
    that it starts on another node than the worker). Open it once a worker answers (the worker
    declares the event exchange it binds to)."""
    traffic = Traffic(
        names,
        seed=hash(request.node.name) & 0xFFFF,
        amqp_urls=list(reversed(rabbit.urls)),
        queue_arguments=QUORUM,
    )
    yield traffic
    with contextlib.suppress(Exception):  # the servers go away with the session anyway
        await traffic.close()


async def ready(rabbit: RabbitCluster, names: WorkerNames, workers: list[WorkerProcess]) -> None:
    """Until a worker answers a query, through the cluster (up to 60 s)."""
    connection = await connect_first(rabbit.urls, timeout=10)
    try:
        await connect_when_ready(connection, exchange=names.command_exchange, seconds=60)
    except TimeoutError:
        logs = "\n".join(w.log()[-4000:] for w in workers)
        raise AssertionError(f"no worker answered:\n{logs}") from None
    finally:
        await connection.close()


async def ready_and_open(rabbit: RabbitCluster, traffic: Traffic, workers: list[WorkerProcess]) -> None:
    """Once a worker answers, open the traffic's connection and queues."""
    await ready(rabbit, traffic.names, workers)
    await traffic.open()


@dataclass
class Faults:
    """The faults of a scenario, in order: what, and when (loop time)."""

    happened: list[tuple[str, float]] = field(default_factory=list)

    def now(self, what: str) -> None:
        self.happened.append((what, asyncio.get_running_loop().time()))

    def recoveries(self, traffic: Traffic) -> list[tuple[str, float, float]]:
        """For each fault: the seconds from it to the first reply to a command published after it,
        and the longest any command published within 10 s of it waited for its reply."""
        sent = traffic.ledger.sent.values()
        found = []
        for what, at in self.happened:
            answered = [s.replied_at for s in sent if s.sent_at >= at and s.replied_at is not None]
            waits = [
                s.replied_at - s.sent_at
                for s in sent
                if at - 1 <= s.sent_at <= at + 10 and s.replied_at is not None
            ]
            first = min(answered) - at if answered else float("inf")
            found.append((what, first, max(waits, default=float("inf"))))
        return found


async def drive(traffic: Traffic, script: Callable[[], Any], rate: float = RATE) -> None:
    """Send a steady stream of mixed mutations while ``script`` (a coroutine function) injects the
    faults; stop sending 3 s after it ends, then wait for every reply and event."""
    sending = asyncio.create_task(traffic.run(10**9, rate))
    try:
        await script()
        await asyncio.sleep(3)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
    await traffic.settle(timeout=90)


def report(
    scenario: str, figures: Figures, recoveries: list[tuple[str, float, float]], workers: list[WorkerProcess]
) -> None:
    """Print the ledger and one summary line per fault (seen with ``-s`` and in CI); fail on any
    figure that must be 0, with the workers' log tails."""
    print(figures.table(f"cluster: {scenario}"))
    for what, first, longest in recoveries:
        print(
            f"cluster: {scenario}: {what}: first command answered again after {first:.2f} s;"
            f" the longest wait for a reply around it {longest:.2f} s"
        )
    problems = figures.problems()
    print(
        f"cluster: {scenario}: {figures.commands_sent} commands, {figures.replies} replies,"
        f" {figures.events_unique} events ({figures.duplicates_by_id} delivered twice),"
        f" must-be-zero figures: {problems or 'all 0'}"
    )
    if problems or figures.replies != figures.commands_sent:
        for worker in workers:
            print(f"--- worker log tail ({worker.log_path})\n" + worker.log()[-4000:])
    assert problems == {}, problems
    assert figures.unanswered == 0 and figures.replies == figures.commands_sent
    assert all(first < 60 for _, first, _ in recoveries), recoveries
