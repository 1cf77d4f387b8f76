"""Operating the worker: health endpoints, the check command, metrics, structured logs."""

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import aio_pika
import asyncpg
import pytest
from aiormq.exceptions import PublishError

from tests.conftest import AMQP_URL
from tests.support.commands import SOURCE
from tests.support.workers import WorkerProcess, bind_full_subscriber, start_worker, worker_command
from worker.client import OutplanClient

pytestmark = pytest.mark.e2e


def get(worker: WorkerProcess, path: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.metrics_port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def check(worker: WorkerProcess, *args: str) -> int:
    return subprocess.run(
        [*worker_command(), "check", *args], env=worker.env, capture_output=True, timeout=30
    ).returncode


async def traffic(worker: WorkerProcess, customer: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        client = OutplanClient(connection, exchange=worker.names.command_exchange)
        await client.start()
        created = await client.create(customer, source=SOURCE)
        await client.get(customer, created.data["id"])
        await client.send("outplan.create", b"{broken", message_id=str(uuid.uuid4()))


def test_health_endpoints_and_the_check_command(worker: WorkerProcess) -> None:
    status, body = get(worker, "/livez")
    assert status == 200 and json.loads(body)["loop_ok"] is True
    status, body = get(worker, "/readyz")
    ready = json.loads(body)
    assert status == 200, body
    assert ready["consumer_ok"] is True and ready["database_ok"] is True and ready["outbox_ok"] is True
    assert check(worker) == 0 and check(worker, "--live") == 0
    assert get(worker, "/nothing")[0] == 404


def test_check_fails_when_no_worker_answers(worker: WorkerProcess) -> None:
    env = {**worker.env, "OUTPLAN_METRICS_PORT": "1"}
    assert (
        subprocess.run([*worker_command(), "check"], env=env, capture_output=True, timeout=30).returncode == 1
    )


def test_check_with_the_http_port_off_says_it_needs_it(worker: WorkerProcess) -> None:
    # OUTPLAN_METRICS_PORT=0 turns the health endpoints off: no check can pass, and a probe that
    # reported "not ready" forever would restart a healthy worker. It is a configuration error.
    env = {**worker.env, "OUTPLAN_METRICS_PORT": "0"}
    for args in ([], ["--live"]):
        done = subprocess.run(
            [*worker_command(), "check", *args], env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 78, done.stderr
        assert done.stderr.splitlines() == [
            "check: needs the worker's HTTP port, which OUTPLAN_METRICS_PORT=0 turns off: "
            "give the worker and check the same OUTPLAN_METRICS_PORT (default 9464)"
        ]


def test_metrics_count_commands_events_and_dead_letters(worker: WorkerProcess) -> None:
    asyncio.run(traffic(worker, str(uuid.uuid4())))
    deadline = time.monotonic() + 10
    while True:
        status, text = get(worker, "/metrics")
        assert status == 200
        wanted = [
            'outplan_commands_total{command="outplan.create",outcome="201"}',
            'outplan_commands_total{command="outplan.get",outcome="200"}',
            'outplan_dead_lettered_total{reason="MALFORMED_JSON"}',
            "outplan_command_duration_seconds_bucket",
            "outplan_outbox_backlog",
            "outplan_outbox_oldest_age_seconds",
            "outplan_consumer_attached 1.0",
            "outplan_relay_leader",
        ]
        missing = [w for w in wanted if w not in text]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert missing == []


def test_metrics_include_the_process_gc_and_platform_collectors(worker: WorkerProcess) -> None:
    status, text = get(worker, "/metrics")
    assert status == 200
    samples = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "python_gc_objects_collected_total",
        "python_info",
    ):
        assert name in samples, name


def test_readiness_fails_while_the_outbox_cannot_drain(tmp_path: Path, fresh_database: str) -> None:
    worker = start_worker(fresh_database, tmp_path, ready_max_outbox_age_seconds="0.5")
    try:
        # a full subscriber queue refuses this worker's events: they are retried for ~15 s
        asyncio.run(bind_full_subscriber(worker.names))
        asyncio.run(traffic(worker, str(uuid.uuid4())))
        time.sleep(1.5)
        status, body = get(worker, "/readyz")
        assert status == 503 and json.loads(body)["outbox_ok"] is False, body
        assert check(worker) == 1
        assert check(worker, "--live") == 0  # alive, just not ready
    finally:
        worker.stop()


def test_a_readiness_check_that_breaks_answers_503_naming_it_and_the_worker_carries_on(
    tmp_path: Path,
    fresh_database: str,
) -> None:
    """A table the readiness check reads goes missing (an operator's mistake, a bad restore): the
    probe gets 503 with the failing check named, not a closed connection; it passes once the
    table is back, and the worker stops cleanly."""
    worker = start_worker(fresh_database, tmp_path)

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(fresh_database)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        asyncio.run(sql("ALTER TABLE outbox_state RENAME TO outbox_state_away"))
        for method in ("GET", "HEAD"):
            status, body = get(worker, "/readyz", method=method)
            assert status == 503
            if method == "GET":
                ready = json.loads(body)
                assert ready["database_ok"] is False and ready["database_error"] == "UndefinedTableError", (
                    body
                )
            else:
                assert body == ""
        asyncio.run(sql("ALTER TABLE outbox_state_away RENAME TO outbox_state"))
        deadline = time.monotonic() + 10
        while (status := get(worker, "/readyz")[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200
        assert len(worker.log_events("readiness check failed unexpectedly; failing it until it passes")) == 1
        assert get(worker, "/readyz", method="POST")[0] == 405
    finally:
        assert worker.stop() == 0, worker.log()


def test_logs_are_json_lines_with_the_message_fields(worker: WorkerProcess) -> None:
    customer = str(uuid.uuid4())
    asyncio.run(traffic(worker, customer))
    time.sleep(0.3)
    lines = [json.loads(line) for line in worker.log().splitlines() if line.strip()]  # every line is JSON
    handled = [e for e in lines if e.get("event") == "command handled" and e.get("customer_id") == customer]
    assert handled
    for entry in handled:
        assert {
            "message_id",
            "correlation_id",
            "command",
            "customer_id",
            "outplan_id",
            "outcome",
            "duration_ms",
            "level",
            "timestamp",
        } <= set(entry)
    rejected = [
        e for e in lines if e.get("event") == "command rejected" and e.get("outcome") == "MALFORMED_JSON"
    ]
    assert rejected and all("duration_ms" in e and "message_id" in e for e in rejected)


def test_alive_but_not_ready_while_the_database_is_unreachable(tmp_path: Path) -> None:
    from tests.support.workers import WorkerNames

    worker = start_worker(
        "postgresql://postgres@127.0.0.1:1/outplans", tmp_path, WorkerNames.fresh(), wait=False
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                live = get(worker, "/livez")
                break
            except OSError:
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.2)
        assert live[0] == 200
        status, body = get(worker, "/readyz")
        assert status == 503 and json.loads(body) == {"started_ok": False}
        assert check(worker, "--live") == 0 and check(worker) == 1
    finally:
        assert worker.stop() == 0


def test_the_command_queue_deleted_under_a_running_worker_is_declared_again(
    tmp_path: Path,
    session_database: str,
) -> None:
    """An operator deletes the queue by mistake: the broker cancels the consumer, the worker
    declares the queue (and its bindings) again, subscribes again, and answers as before."""
    worker = start_worker(session_database, tmp_path)
    customer = str(uuid.uuid4())

    async def scenario() -> None:
        async with await aio_pika.connect(AMQP_URL) as connection:
            client = OutplanClient(connection, exchange=worker.names.command_exchange, timeout=2.0)
            await client.start()
            created = await client.create(customer, source=SOURCE)
            await (await connection.channel()).queue_delete(worker.names.command_queue)
            deadline = time.monotonic() + 15
            while True:  # until the queue is back, a command is returned unroutable (or lost with it)
                try:
                    reply = await client.get(customer, created.data["id"])
                    break
                except (PublishError, TimeoutError):
                    await asyncio.sleep(0.1)
                    assert time.monotonic() < deadline, worker.log()
            assert reply.status_code == 200 and reply.data["id"] == created.data["id"]
            again = await client.create(customer, source=SOURCE)
            assert again.status_code == 201

    try:
        asyncio.run(scenario())
        assert worker.log_events("the broker cancelled the consumer; subscribing again")
        status, body = get(worker, "/readyz")
        assert status == 200 and json.loads(body)["consumer_ok"] is True, body
    finally:
        assert worker.stop() == 0
