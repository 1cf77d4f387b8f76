"""``outplan-worker replay``: rebuild a subscriber from history, every filter and target, bad arguments."""

import asyncio
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from contracts import Applied, Projection, parse_event
from tests.conftest import AMQP_URL, create_database, drop_database
from tests.support.commands import SOURCE
from tests.support.workers import WorkerProcess, delete_names, start_worker, worker_command
from worker.client import OutplanClient
from worker.persistence.outplans import to_versioned

pytestmark = pytest.mark.e2e


@dataclass
class History:
    worker: WorkerProcess
    database_url: str
    customers: list[str]
    live_bodies: list[bytes]  # as the live subscriber received them

    def replay(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*worker_command(), "replay", *args],
            env=self.worker.env,
            capture_output=True,
            text=True,
            timeout=60,
            **kwargs,
        )

    def db(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        async def query() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.database_url)
            try:
                return list(await conn.fetch(sql, *params))
            finally:
                await conn.close()

        return asyncio.run(query())


async def make_history(worker: WorkerProcess, customers: list[str]) -> list[bytes]:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        live = await channel.declare_queue(exclusive=True)
        await live.bind(worker.names.event_exchange, routing_key="#")
        bodies: list[bytes] = []

        async def keep(message: AbstractIncomingMessage) -> None:
            bodies.append(message.body)

        await live.consume(keep, no_ack=True)
        client = OutplanClient(connection, exchange=worker.names.command_exchange)
        await client.start()
        expected = 0
        for i in range(30):
            customer = customers[i % len(customers)]
            created = await client.create(customer, name=f"o{i}", source=SOURCE)
            outplan_id = created.data["id"]
            await client.update_basic_info(customer, outplan_id, name=f"o{i}!", detail="changed")
            expected += 2
            if i % 3 == 0:
                await client.delete(customer, outplan_id)
                expected += 1
        async with asyncio.timeout(20):
            while len(bodies) < expected:
                await asyncio.sleep(0.05)
        return bodies


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    url = create_database()
    worker = start_worker(url, tmp_path_factory.mktemp("replay"))
    customers = [str(uuid.uuid4()), str(uuid.uuid4())]
    bodies = asyncio.run(make_history(worker, customers))
    yield History(worker, url, customers, bodies)
    worker.stop()
    asyncio.run(delete_names(worker.names))
    drop_database(url)


async def collect(queue_name: str, expected: int, seconds: float = 20) -> list[AbstractIncomingMessage]:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        got: list[AbstractIncomingMessage] = []
        async with asyncio.timeout(seconds):
            while len(got) < expected:
                message = await queue.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                else:
                    got.append(message)
        await asyncio.sleep(0.2)
        assert await queue.get(no_ack=True, fail=False) is None, "more events than expected"
        await queue.delete(if_unused=False, if_empty=False)
        return got


async def wait_for_depth(queue_name: str, depth: int, seconds: float = 30) -> None:
    """Until the queue holds ``depth`` messages: a fixed sleep would depend on how fast a process starts."""
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        async with asyncio.timeout(seconds):
            while True:
                declared = await channel.declare_queue(queue_name, passive=True)
                if (declared.declaration_result.message_count or 0) >= depth:
                    return
                await asyncio.sleep(0.05)


async def fresh_queue() -> str:
    name = f"test-replay-{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(AMQP_URL) as connection:
        await (await connection.channel()).declare_queue(name, durable=True)
    return name


def live_outplans(history: History) -> dict[uuid.UUID, dict[str, Any]]:
    rows = history.db("SELECT * FROM outplans WHERE tm_delete IS NULL")
    return {row["id"]: to_versioned(row).outplan.model_dump(mode="json") for row in rows}


def project(bodies: list[bytes], projection: Projection | None = None) -> Projection:
    projection = projection or Projection()
    for body in bodies:
        projection.apply(parse_event(body))
    return projection


def total_events(history: History) -> int:
    return len(history.db("SELECT 1 FROM outplan_events WHERE eventsequence IS NOT NULL"))


def test_a_full_replay_rebuilds_a_projection_identical_to_the_database(history: History) -> None:
    queue = asyncio.run(fresh_queue())
    result = history.replay("--queue", queue)
    assert result.returncode == 0, result.stderr
    total = total_events(history)
    messages = asyncio.run(collect(queue, total))
    projection = project([m.body for m in messages])
    assert {k: v.model_dump(mode="json") for k, v in projection.outplans.items()} == live_outplans(history)
    assert projection.gaps == []
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert summary["confirmed"] == summary["selected"] == total and summary["failed"] == 0


def test_an_interrupted_replay_resumes_where_it_stopped(history: History) -> None:
    queue = asyncio.run(fresh_queue())
    total = total_events(history)
    process = subprocess.Popen(
        [*worker_command(), "replay", "--queue", queue, "--rate", "40"],
        env=history.worker.env,
        stderr=subprocess.PIPE,
        text=True,
    )
    asyncio.run(wait_for_depth(queue, 2))  # publishing: started, its Ctrl-C handler in place
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    resume_at = int(stderr.rsplit("--from-seq ", 1)[1].split()[0])
    assert 1 < resume_at <= total
    result = history.replay("--queue", queue, "--from-seq", str(resume_at))
    assert result.returncode == 0, result.stderr
    messages = asyncio.run(collect(queue, total))
    sequences = [json.loads(m.body)["eventsequence"] for m in messages]
    assert sequences == sorted(sequences) and len(set(sequences)) == total  # nothing skipped or repeated
    projection = project([m.body for m in messages])
    assert {k: v.model_dump(mode="json") for k, v in projection.outplans.items()} == live_outplans(history)


def test_replayed_events_keep_their_ids_and_bytes_and_change_nothing(history: History) -> None:
    projection = project(history.live_bodies)
    before = (dict(projection.outplans), dict(projection.versions))
    queue = asyncio.run(fresh_queue())
    assert history.replay("--queue", queue).returncode == 0
    messages = asyncio.run(collect(queue, total_events(history)))
    live_by_id = {json.loads(b)["id"]: b for b in history.live_bodies}
    for message in messages:
        assert message.body == live_by_id[message.message_id]  # byte for byte, same id
        assert message.headers["x-replayed"] is True and message.headers["x-replay-run-id"]
        assert message.content_type == "application/cloudevents+json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    outcomes = {projection.apply(parse_event(m.body)) for m in messages}
    assert outcomes == {Applied.DUPLICATE}
    assert (projection.outplans, projection.versions) == before


def dry_run(history: History, *args: str) -> list[dict[str, Any]]:
    result = history.replay("--dry-run", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_filter_selects_what_it_says(history: History) -> None:
    everything = dry_run(history)
    assert len(everything) == total_events(history)
    customer = history.customers[0]
    assert dry_run(history, "--customer-id", customer) == [
        e for e in everything if e["customerid"] == customer
    ]
    deleted = dry_run(history, "--type", "outplan_deleted")
    assert deleted and deleted == [e for e in everything if e["type"] == "outplan_deleted"]
    two = dry_run(history, "--type", "outplan_deleted", "--type", "outplan_created")
    assert two == [e for e in everything if e["type"] in ("outplan_deleted", "outplan_created")]
    first, second = everything[0]["subject"], everything[-1]["subject"]
    picked = dry_run(history, "--outplan-id", first, "--outplan-id", second)
    assert picked == [e for e in everything if e["subject"] in (first, second)]
    assert dry_run(history, "--from-seq", "5", "--to-seq", "9") == [
        e for e in everything if 5 <= e["eventsequence"] <= 9
    ]
    middle = everything[len(everything) // 2]["time"]
    assert dry_run(history, "--since", middle) == [e for e in everything if e["time"] >= middle]
    assert dry_run(history, "--until", middle) == [e for e in everything if e["time"] < middle]
    combined = dry_run(history, "--customer-id", customer, "--type", "outplan_updated", "--since", middle)
    assert combined == [
        e
        for e in everything
        if e["customerid"] == customer and e["type"] == "outplan_updated" and e["time"] >= middle
    ]


def test_targets_exchange_with_routing_key_and_the_events_exchange(history: History) -> None:
    async def setup() -> tuple[str, str, str]:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                f"test-replay-x-{uuid.uuid4().hex[:6]}", auto_delete=True
            )
            routed = await channel.declare_queue(f"test-replay-{uuid.uuid4().hex[:8]}", durable=True)
            await routed.bind(exchange, routing_key="backfill")
            events = await channel.declare_queue(f"test-replay-{uuid.uuid4().hex[:8]}", durable=True)
            await events.bind(history.worker.names.event_exchange, routing_key="outplan_deleted")
            return exchange.name, routed.name, events.name

    exchange, routed, events = asyncio.run(setup())
    deleted = len(dry_run(history, "--type", "outplan_deleted"))
    result = history.replay("--type", "outplan_deleted", "--exchange", exchange, "--routing-key", "backfill")
    assert result.returncode == 0, result.stderr
    unroutable = history.replay(
        "--type", "outplan_deleted", "--exchange", exchange, "--routing-key", "nobody"
    )
    assert unroutable.returncode == 1  # one routing key for every event, and it reaches no queue: an error
    summary = json.loads(unroutable.stderr.strip().splitlines()[-1])
    assert summary["confirmed"] == 0 and "NO_ROUTE" in summary["error"]
    assert len(asyncio.run(collect(routed, deleted))) == deleted
    result = history.replay("--type", "outplan_deleted")  # default: the events exchange, key = type
    assert result.returncode == 0, result.stderr
    received = asyncio.run(collect(events, deleted))
    assert {m.routing_key for m in received} == {"outplan_deleted"}


def test_replay_to_the_events_exchange_counts_what_no_subscriber_binds(history: History) -> None:
    """A subscriber binding only the types it wants is ordinary: the rest are counted, not failures."""

    async def bind() -> str:
        async with await aio_pika.connect(AMQP_URL) as connection:
            queue = await (await connection.channel()).declare_queue(
                f"test-replay-{uuid.uuid4().hex[:8]}", durable=True
            )
            await queue.bind(history.worker.names.event_exchange, routing_key="outplan_created")
            return queue.name

    queue = asyncio.run(bind())
    created = len(dry_run(history, "--type", "outplan_created"))
    deleted = len(dry_run(history, "--type", "outplan_deleted"))
    result = history.replay("--type", "outplan_created", "--type", "outplan_deleted")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert (summary["confirmed"], summary["unrouted"], summary["failed"]) == (created, deleted, 0)
    assert f"{deleted} event(s) matched no binding" in result.stderr
    assert {json.loads(m.body)["type"] for m in asyncio.run(collect(queue, created))} == {"outplan_created"}


def test_export_then_import_round_trips_byte_for_byte(history: History, tmp_path: Path) -> None:
    exported = tmp_path / "events.jsonl"
    assert history.replay("--export", str(exported), "--customer-id", history.customers[1]).returncode == 0
    lines = exported.read_bytes().splitlines()
    assert lines and all(json.loads(line)["customerid"] == history.customers[1] for line in lines)
    queue = asyncio.run(fresh_queue())
    result = history.replay("--import", str(exported), "--queue", queue)
    assert result.returncode == 0, result.stderr
    assert [m.body for m in asyncio.run(collect(queue, len(lines)))] == lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-seq", "9", "--to-seq", "3"], "--from-seq 9 is after --to-seq 3"),
        (["--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"], "is not before --until"),
        (["--since", "yesterday"], "is not an RFC 3339 time"),
        (["--type", "outplan_renamed"], "unknown event type 'outplan_renamed'"),
        (["--outplan-id", "not-a-uuid"], "--outplan-id 'not-a-uuid' is not a UUID"),
        (["--customer-id", "42"], "--customer-id '42' is not a UUID"),
        (["--queue", "test-replay-does-not-exist"], "queue 'test-replay-does-not-exist' does not exist"),
        (["--rate", "0"], "--rate must be a positive number"),
    ],
)
def test_bad_arguments_fail_before_anything_is_sent(history: History, args: list[str], message: str) -> None:
    result = history.replay(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_an_unreachable_broker_is_a_clear_error(history: History) -> None:
    env = {**history.worker.env, "OUTPLAN_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"}
    result = subprocess.run(
        [*worker_command(), "replay"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "cannot reach the broker" in result.stderr


def test_the_example_dialer_subscriber_keeps_live_outplans(history: History, tmp_path: Path) -> None:
    import sqlite3
    import sys

    queue, db = f"test-dialer-{uuid.uuid4().hex[:8]}", tmp_path / "dialer.sqlite3"
    example = Path(__file__).parents[2] / "examples" / "dialer_subscriber.py"
    process = subprocess.Popen(
        [
            sys.executable,
            str(example),
            "--exchange",
            history.worker.names.event_exchange,
            "--queue",
            queue,
            "--db",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and "listening" in process.stdout.readline()
        assert history.replay("--queue", queue).returncode == 0
        total = total_events(history)
        applied = 0
        while applied < total:
            line = process.stdout.readline()
            assert line, "the subscriber stopped"
            applied += line.startswith("applied")
        assert history.replay("--queue", queue, "--to-seq", "5").returncode == 0  # duplicates change nothing
        seen = [process.stdout.readline().split()[0] for _ in range(5)]
        assert seen == ["duplicate"] * 5
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
        asyncio.run(_delete_queue(queue))
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT data FROM outplans WHERE deleted = 0").fetchall()
    assert {uuid.UUID(json.loads(r[0])["id"]): json.loads(r[0]) for r in rows} == live_outplans(history)


async def _delete_queue(name: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        await (await connection.channel()).queue_delete(name)


def test_tail_prints_live_events_filtered_by_type_and_customer(history: History) -> None:
    customer = str(uuid.uuid4())
    process = subprocess.Popen(
        [*worker_command(), "tail", "--type", "outplan_created", "--customer-id", customer],
        env=history.worker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None and "listening" in process.stderr.readline()

        async def changes() -> str:
            async with await aio_pika.connect(AMQP_URL) as connection:
                client = OutplanClient(connection, exchange=history.worker.names.command_exchange)
                await client.start()
                await client.create(str(uuid.uuid4()), name="someone else's", source=SOURCE)
                created = await client.create(customer, name="mine", source=SOURCE)
                await client.delete(customer, created.data["id"])
                return str(created.data["id"])

        outplan_id = asyncio.run(changes())
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "outplan_created" in line and outplan_id in line and "name='mine'" in line
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0 and out == ""  # neither the other customer nor the delete


def test_tail_skips_a_foreign_body_with_one_line_and_goes_on(history: History) -> None:
    # Anything can be published to the events exchange; tail names what is not an event and goes on.
    process = subprocess.Popen(
        [*worker_command(), "tail"],
        env=history.worker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    foreign = [
        ("foreign-not-json", b"\xffnot json"),
        ("foreign-not-an-event", b'{"hello": "world"}'),
        ("foreign-array", b"[]"),
    ]
    try:
        assert process.stderr is not None and "listening" in process.stderr.readline()

        async def foreign_then_a_change() -> str:
            async with await aio_pika.connect(AMQP_URL) as connection:
                channel = await connection.channel()
                exchange = await channel.get_exchange(history.worker.names.event_exchange)
                for message_id, body in foreign:
                    await exchange.publish(aio_pika.Message(body, message_id=message_id), "outplan_created")
                client = OutplanClient(connection, exchange=history.worker.names.command_exchange)
                await client.start()
                created = await client.create(str(uuid.uuid4()), name="after", source=SOURCE)
                return str(created.data["id"])

        outplan_id = asyncio.run(foreign_then_a_change())
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "outplan_created" in line and outplan_id in line and "name='after'" in line
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    lines = err.splitlines()
    assert [line.split(": not an outplan event: ")[0] for line in lines] == [
        f"tail: skipped message {message_id} (outplan_created)" for message_id, _ in foreign
    ], err
    assert "Invalid JSON" in lines[0] and "type" in lines[1] and "must be a JSON object" in lines[2]
