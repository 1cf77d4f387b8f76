"""Subscribers cannot stall or flood each other, and stopping is prompt and truthful, through
running workers: a selective subscriber, a full ``reject-publish`` one, nobody at all, a standby.

Each test takes a database of its own (``fresh_database``): the relay lock is per database, so no
other test's worker leads there."""

import asyncio
import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest

from tests.conftest import AMQP_URL
from tests.e2e.conftest import Collector
from tests.support.commands import SOURCE
from tests.support.workers import WorkerNames, WorkerProcess, delete_names, start_worker
from worker.client import OutplanClient

pytestmark = pytest.mark.e2e
TRAFFIC_SECONDS = 60.0  # the issue asks for a minute of traffic
WRITERS = 6  # concurrent command loops
PACE = 0.02  # s between one writer's commands
FULL = {"x-max-length": 1, "x-overflow": "reject-publish"}


def loud_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    """The worker's WARNING, ERROR and CRITICAL lines."""
    return [e for e in worker.log_entries() if e.get("level") in ("warning", "error", "critical")]


def logged(worker: WorkerProcess, event: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not worker.log_events(event):
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.05)


def stop_timed(worker: WorkerProcess) -> float:
    started = time.monotonic()
    assert worker.stop() == 0, worker.log()
    return time.monotonic() - started


def readiness(worker: WorkerProcess) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/readyz", timeout=5) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))


async def subscribe(
    connection: aio_pika.abc.AbstractConnection,
    exchange: str,
    routing_key: str,
    arguments: dict[str, Any] | None = None,
    *,
    every: float | None = None,
) -> Collector:
    """A queue bound to the events exchange; consumed at once, or one message per ``every`` s."""
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, arguments=arguments)
    await queue.bind(exchange, routing_key=routing_key)
    collector = Collector()
    if every is None:
        await queue.consume(collector, no_ack=True)
    else:

        async def slowly() -> None:
            while True:
                message = await queue.get(no_ack=True, fail=False)
                if message is not None:
                    collector.messages.append(message)
                await asyncio.sleep(every)

        collector.task = asyncio.create_task(slowly())
    return collector


async def write(client: OutplanClient, until: float) -> int:
    """Create, update and delete this writer's outplans at random, until ``until`` (monotonic s);
    the number of commands sent."""
    sent, customer, live = 0, str(uuid.uuid4()), list[str]()
    while time.monotonic() < until:
        roll = random.random()
        if not live or roll < 0.4:
            live.append((await client.create(customer, source=SOURCE)).data["id"])
        elif roll < 0.85:
            await client.update_basic_info(customer, random.choice(live), name=f"n{sent}", detail="d")
        else:
            await client.delete(customer, live.pop(random.randrange(len(live))))
        sent += 1
        await asyncio.sleep(PACE)
    return sent


async def checkpoint_reaches_the_end(database: str, seconds: float) -> tuple[int, int]:
    conn = await asyncpg.connect(database)
    try:
        async with asyncio.timeout(seconds):
            while True:
                row = await conn.fetchrow(
                    "SELECT (SELECT published_through FROM outbox_state) AS mark,"
                    " (SELECT coalesce(max(eventsequence), 0) FROM outplan_events) AS last"
                )
                assert row is not None  # a SELECT without FROM: one row
                if row["mark"] >= row["last"]:
                    return int(row["mark"]), int(row["last"])
                await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def neighbours(worker: WorkerProcess, database: str) -> dict[str, Any]:
    exchange = worker.names.event_exchange
    async with await aio_pika.connect(AMQP_URL) as connection:
        healthy = await subscribe(connection, exchange, "#")
        selective = await subscribe(connection, exchange, "outplan_created")
        full = await subscribe(connection, exchange, "#", FULL, every=0.05)  # takes ~20 events/s
        client = OutplanClient(connection, exchange=worker.names.command_exchange)
        await client.start()
        ages: list[float] = []

        async def watch(until: float) -> None:
            while time.monotonic() < until:
                ready = await asyncio.to_thread(readiness, worker)
                ages.append(float(ready.get("outbox_oldest_age_seconds", 0.0)))
                await asyncio.sleep(1.0)

        until = time.monotonic() + TRAFFIC_SECONDS
        *sent, _ = await asyncio.gather(*(write(client, until) for _ in range(WRITERS)), watch(until))
        mark, last = await checkpoint_reaches_the_end(database, seconds=90)
        await asyncio.sleep(1.0)  # a repeat would have arrived by now
        assert full.task is not None
        full.task.cancel()
        return {
            "commands": sum(sent),
            "last": last,
            "checkpoint": mark,
            "healthy": healthy,
            "selective": selective,
            "full": full,
            "max_outbox_age": max(ages, default=0.0),
        }


@pytest.mark.timeout(300)
def test_a_minute_beside_a_selective_and_a_full_subscriber(tmp_path: Path, fresh_database: str) -> None:
    worker = start_worker(fresh_database, tmp_path, log_level="DEBUG")
    try:
        seen = asyncio.run(neighbours(worker, fresh_database))
    finally:
        stop_timed(worker)
        asyncio.run(delete_names(worker.names))
    healthy: Collector = seen["healthy"]
    copies = Counter(b["eventsequence"] for b in healthy.bodies())
    # At DEBUG the worker names every event the broker refused (at INFO only the first of a burst).
    refused = {
        e["eventsequence"]
        for name in (
            "event refused by the broker (basic.nack); publishing it again",
            "event refused by the broker while refusals are ongoing; left to replay",
        )
        for e in worker.log_events(name)
    }
    first_given_up = worker.log_events(
        "events refused by the broker; refusals are ongoing: refused events are left to replay"
    )
    summaries = worker.log_events("events refused by the broker and left to replay")
    given_up = {e["eventsequence"] for e in first_given_up}
    missing = set(range(1, seen["last"] + 1)) - set(copies)
    confirmed_twice = {n for n, c in copies.items() if c > 1 and n not in refused}
    nacked_copies = Counter(copies[n] for n in refused)
    versions: dict[str, list[int]] = defaultdict(list)
    for body in healthy.bodies():
        versions[body["subject"]].append(body["outplanversion"])
    out_of_order = [o for o, v in versions.items() if v != sorted(v)]
    print(
        f"\n{TRAFFIC_SECONDS:.0f} s of traffic: {seen['commands']} commands, {seen['last']} events; "
        f"healthy subscriber: {len(healthy.messages)} messages, {len(missing)} missing, "
        f"{len(confirmed_twice)} confirmed events twice, {len(refused)} events nacked at least once "
        f"(copies of those: {dict(sorted(nacked_copies.items()))}), {len(given_up)} episodes of ongoing "
        "refusals, "
        f"{sum(e['events'] for e in summaries)} events left to replay in {len(summaries)} summary lines, "
        f"{len(out_of_order)} outplans out of order; full subscriber took {len(seen['full'].messages)}; "
        f"selective took {len(seen['selective'].messages)}; max outbox age {seen['max_outbox_age']:.1f} s; "
        f"checkpoint {seen['checkpoint']}"
    )
    assert not missing and not confirmed_twice and not out_of_order
    assert max(copies.values()) <= 6  # 1 + at most 5 re-publishes, for any event
    # While refusals go on, nothing is held back: the oldest unpublished event stays young.
    assert seen["max_outbox_age"] < 10, "the relay fell behind the healthy subscriber"
    lines = [e for e in loud_lines(worker) if e["level"] == "error"]
    assert len(lines) == len(first_given_up) + len(summaries)  # one per episode plus one per 30 s
    selective = Counter(b["eventsequence"] for b in seen["selective"].bodies())
    created = {b["eventsequence"] for b in healthy.bodies() if b["type"] == "outplan_created"}
    assert set(selective) == created and all(c == 1 for n, c in selective.items() if n not in refused)


async def create_one(names: WorkerNames) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        client = OutplanClient(connection, exchange=names.command_exchange)
        await client.start()
        assert (await client.create(str(uuid.uuid4()), source=SOURCE)).status_code == 201


def test_the_quickstart_with_nobody_subscribed_is_quiet_and_stops_at_once(
    tmp_path: Path, fresh_database: str
) -> None:
    worker = start_worker(fresh_database, tmp_path)
    try:
        asyncio.run(create_one(worker.names))
        asyncio.run(checkpoint_reaches_the_end(fresh_database, seconds=5))
        time.sleep(0.5)
    finally:
        took = stop_timed(worker)
        asyncio.run(delete_names(worker.names))
    assert loud_lines(worker) == []
    assert took < 3.0
    assert [e["outbox_empty"] for e in worker.log_events("worker stopped")] == [True]


@contextmanager
def leader_and_standby(database: str, tmp_path: Path) -> Iterator[tuple[WorkerNames, WorkerProcess]]:
    """Two workers on the same names and database, the first leading the relay: their names and the
    standby, started. The leader is stopped on leaving."""
    names = WorkerNames.fresh()
    leader = start_worker(database, tmp_path, names)
    try:
        logged(leader, "relay is publishing")
        standby = start_worker(database, tmp_path, names)
        logged(standby, "worker started")  # the leader answers on these names already
        yield names, standby
    finally:
        stop_timed(leader)
        asyncio.run(delete_names(names))


def test_a_worker_whose_relay_stands_by_stops_within_a_second(tmp_path: Path, fresh_database: str) -> None:
    with leader_and_standby(fresh_database, tmp_path) as (names, standby):
        asyncio.run(create_one(names))
        took = stop_timed(standby)
    print(f"\nstandby stopped {took:.2f} s after SIGTERM")
    assert took < 1.5
    assert loud_lines(standby) == []
    assert standby.log_events("another process's relay holds the lock; it publishes the outbox")
    assert not standby.log_events("relay is publishing")
    stopped = standby.log_events("worker stopped")
    assert [(e["outbox_published_by"], e["outbox_empty"]) for e in stopped] == [("the leading relay", True)]


def test_a_standby_says_what_the_outbox_holds_when_it_stops(tmp_path: Path, fresh_database: str) -> None:
    """Its outbox_empty is read from the outbox, not assumed: false while the leader is held back."""
    with leader_and_standby(fresh_database, tmp_path) as (names, standby):
        asyncio.run(stop_while_the_leader_is_held_back(names, standby))
    stopped = standby.log_events("worker stopped")
    assert [(e["outbox_published_by"], e["outbox_empty"]) for e in stopped] == [("the leading relay", False)]
    assert loud_lines(standby) == []


async def stop_while_the_leader_is_held_back(names: WorkerNames, standby: WorkerProcess) -> None:
    """A subscriber queue that refuses every event, a create, then SIGTERM to the standby."""
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        full = await channel.declare_queue(
            exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await full.bind(names.event_exchange, routing_key="#")
        client = OutplanClient(connection, exchange=names.command_exchange)
        await client.start()
        assert (await client.create(str(uuid.uuid4()), source=SOURCE)).status_code == 201
        await asyncio.to_thread(stop_timed, standby)  # the leader retries the refused event meanwhile
