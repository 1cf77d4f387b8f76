"""Workers killed, stopped and crowded: nothing accepted is lost, nothing is applied twice."""

import asyncio
import random
from collections.abc import Callable

import pytest

from tests.faults.conftest import COMMANDS, RATE, ready, report
from tests.faults.traffic import Traffic
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.faults, pytest.mark.timeout(400)]


async def test_worker_sigkilled_three_times(
    workers: Callable[..., WorkerProcess], traffic: Traffic, fresh_database: str
) -> None:
    worker = workers()
    await ready(worker)
    await traffic.open()
    rng = random.Random(7)
    kill_at = sorted(rng.randrange(COMMANDS // 10, COMMANDS * 9 // 10) for _ in range(3))

    async def on_progress(sent: int) -> None:
        while kill_at and sent >= kill_at[0]:
            kill_at.pop(0)
            await asyncio.to_thread(worker.kill)
            traffic.ledger.faults += 1
            worker.restart()

    await traffic.run(COMMANDS, RATE, on_progress)
    await traffic.settle()
    figures = await traffic.ledger.audit(fresh_database, traffic.customers)
    report("worker SIGKILLed 3 times", figures, [worker])
    assert figures.faults_injected == 3
    assert await asyncio.to_thread(worker.stop) == 0


async def test_two_workers_one_sigkilled(
    workers: Callable[..., WorkerProcess], traffic: Traffic, fresh_database: str
) -> None:
    first, second = workers(), workers()
    await ready(first)
    await traffic.open()

    async def on_progress(sent: int) -> None:
        if sent == COMMANDS // 2:
            await asyncio.to_thread(first.kill)
            traffic.ledger.faults += 1

    await traffic.run(COMMANDS, RATE, on_progress)
    await traffic.settle()
    figures = await traffic.ledger.audit(fresh_database, traffic.customers)
    report("two workers, one SIGKILLed", figures, [first, second])
    assert await asyncio.to_thread(second.stop) == 0


async def test_sigterm_mid_stream_exits_cleanly(
    workers: Callable[..., WorkerProcess], traffic: Traffic, fresh_database: str
) -> None:
    worker = workers()
    await ready(worker)
    await traffic.open()
    exit_codes: list[int] = []

    async def on_progress(sent: int) -> None:
        if sent == COMMANDS // 2:
            exit_codes.append(await asyncio.to_thread(worker.stop))
            traffic.ledger.faults += 1
            worker.restart()

    await traffic.run(COMMANDS, RATE, on_progress)
    await traffic.settle()
    figures = await traffic.ledger.audit(fresh_database, traffic.customers)
    report("SIGTERM mid-stream", figures, [worker])
    assert exit_codes == [0]
    [stopped, *_] = worker.log_events("worker stopped")
    assert stopped["messages_drained"] is True and stopped["outbox_empty"] is True
    assert await asyncio.to_thread(worker.stop) == 0
