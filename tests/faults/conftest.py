"""Fault scenarios: sizes come from the environment so CI can run a reduced suite."""

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.ledger import Figures
from tests.faults.traffic import Traffic
from tests.support.workers import (
    Launcher,
    WorkerNames,
    WorkerProcess,
    delete_names,
    start_worker,
    wait_until_answering,
    worker_command,
)

COMMANDS = int(os.environ.get("OUTPLAN_FAULT_COMMANDS", "2000"))
RATE = float(os.environ.get("OUTPLAN_FAULT_RATE", "300"))


@pytest.fixture
def names() -> WorkerNames:
    return WorkerNames.fresh()


@pytest.fixture
def workers(
    fresh_database: str, names: WorkerNames, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers on this test's database and names; all are stopped at the end.

    ``start(launcher=..., **settings)``: ``launcher`` as for ``start_worker`` (the console script
    by default), ``settings`` as ``OUTPLAN_<NAME>`` variables; it returns without waiting.
    """
    started: list[WorkerProcess] = []

    def start(*, launcher: Launcher = worker_command, **settings: str) -> WorkerProcess:
        worker = start_worker(fresh_database, tmp_path, names, wait=False, launcher=launcher, **settings)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture
async def traffic(names: WorkerNames, request: pytest.FixtureRequest) -> AsyncIterator[Traffic]:
    traffic = Traffic(names, seed=hash(request.node.name) & 0xFFFF)
    yield traffic
    await traffic.close()
    await delete_names(names)


async def ready(worker: WorkerProcess) -> None:
    try:
        await wait_until_answering(worker.names, seconds=60)
    except TimeoutError:
        raise AssertionError("worker did not answer:\n" + worker.log()[-5000:]) from None


def report(title: str, figures: Figures, workers: list[WorkerProcess]) -> None:
    print(figures.table(title))
    problems = figures.problems()
    if problems:
        for worker in workers:
            print(f"--- worker log tail ({worker.log_path})\n" + worker.log()[-4000:])
    assert problems == {}, problems
    assert figures.unanswered == 0 and figures.replies == figures.commands_sent
