"""SIGTERM drains within its bound, a second SIGTERM exits at once; concurrent changes serialise."""

import asyncio
import json
import signal
import time
import uuid
from pathlib import Path

import aio_pika
import pytest

from tests.conftest import AMQP_URL
from tests.e2e.conftest import Collector
from tests.support.commands import SOURCE
from tests.support.workers import WorkerNames, bind_full_subscriber, start_worker
from worker.client import OutplanClient

pytestmark = pytest.mark.e2e


async def create_refused_event(names: WorkerNames) -> None:
    """A create whose event a full subscriber queue refuses: the outbox cannot empty for ~15 s."""
    await bind_full_subscriber(names)
    async with await aio_pika.connect(AMQP_URL) as connection:
        client = OutplanClient(connection, exchange=names.command_exchange)
        await client.start()
        reply = await client.create(uuid.uuid4(), source=SOURCE)
        assert reply.status_code == 201


def test_sigterm_waits_for_the_outbox_no_longer_than_the_drain_timeout(
    tmp_path: Path, fresh_database: str
) -> None:
    worker = start_worker(fresh_database, tmp_path, drain_seconds="2")
    asyncio.run(create_refused_event(worker.names))
    started = time.monotonic()
    assert worker.stop() == 0
    assert 1.5 < time.monotonic() - started < 8
    assert [e["outbox_empty"] for e in worker.log_events("worker stopped")] == [False]


def test_a_second_sigterm_exits_at_once(tmp_path: Path, fresh_database: str) -> None:
    worker = start_worker(fresh_database, tmp_path, drain_seconds="60")
    asyncio.run(create_refused_event(worker.names))
    worker.process.send_signal(signal.SIGTERM)
    worker.wait_for_log_event("stopping: no new messages; draining")
    assert worker.process.poll() is None  # still draining: the refused event keeps the outbox full
    started = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(5) != 0
    assert time.monotonic() - started < 3
    assert "second signal: exiting at once" in worker.log()


async def test_concurrent_changes_to_one_outplan_serialise(
    client: OutplanClient, events: Collector, customer_id: uuid.UUID
) -> None:
    created = await client.create(customer_id, source=SOURCE)
    outplan_id = created.data["id"]
    replies = await asyncio.gather(
        *(
            client.update_basic_info(customer_id, outplan_id, name=f"writer {i}", detail=str(i))
            for i in range(40)
        )
    )
    assert all(r.status_code == 200 for r in replies)
    received = await events.wait_for(41, customerid=str(customer_id))
    assert sorted(e["outplanversion"] for e in received) == list(range(1, 42))  # contiguous, none lost
    assert [e["outplanversion"] for e in received] == list(range(1, 42))  # and published in order
    last = received[-1]["data"]
    final = await client.get(customer_id, outplan_id)
    assert final.data == last  # last writer wins
    assert json.dumps(final.data) in {json.dumps(r.data) for r in replies}
