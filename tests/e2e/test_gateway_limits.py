"""The gateway's own answers: 413 before the broker, 504 when no worker answers, 503 when the
broker cannot be reached or has nowhere to route the command."""

import asyncio
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import aio_pika
import pytest

from tests.conftest import AMQP_URL
from tests.support.amqp_cutter import BASIC_PUBLISH, AmqpCutter
from tests.support.gateways import curl, gateway_command, http_status, start_gateway, token
from tests.support.workers import WorkerNames, WorkerProcess, free_port

pytestmark = pytest.mark.e2e

JSON = ["--header", "Content-Type: application/json"]


def test_a_body_over_64_kib_is_a_413_before_the_broker(worker: WorkerProcess, tmp_path: Path) -> None:
    gateway = start_gateway(worker.names, tmp_path)
    try:
        url = f"{gateway.base}/v1.0/outplans?token={token(uuid.uuid4())}"
        large = tmp_path / "large.json"
        large.write_text(json.dumps({"name": "x", "detail": "d" * 70_000, "source": {"type": "tel"}}))
        for extra in ([], ["--header", "Transfer-Encoding: chunked"]):  # with a length, and streamed
            answer = curl(["--request", "POST", url, *JSON, *extra, "--data-binary", f"@{large}"])
            assert answer.status == 413, (extra, answer.body)
            assert answer.json()["reason"] == "BODY_TOO_LARGE"
        metrics = curl([f"{gateway.base}/metrics"]).body.decode()
        assert (
            'outplan_gateway_requests_total{method="POST",route="/v1.0/outplans",status="413"} 2.0' in metrics
        )
        just_fits = {"name": "x", "detail": "d" * 4096, "source": {"type": "tel", "target": "+15559876543"}}
        accepted = curl(["--request", "POST", url, *JSON, "--data-raw", json.dumps(just_fits)])
        assert accepted.status == 201, accepted.body
    finally:
        assert gateway.stop() == 0, gateway.log()


async def test_no_worker_answering_is_a_504_after_the_timeout(tmp_path: Path) -> None:
    names = WorkerNames.fresh()
    async with await aio_pika.connect(AMQP_URL) as connection:
        # The command exchange and a queue, as a worker that has stopped leaves them: nobody consumes.
        channel = await connection.channel()
        exchange = await channel.declare_exchange(names.command_exchange, "direct", auto_delete=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="outplan.get")
        gateway = await asyncio.to_thread(start_gateway, names, tmp_path, gateway_timeout_seconds="1")
        try:
            url = f"{gateway.base}/v1.0/outplans/{uuid.uuid4()}?token={token(uuid.uuid4())}"
            started = time.monotonic()
            answer = await asyncio.to_thread(curl, [url])
            took = time.monotonic() - started
            assert (answer.status, answer.json()["reason"]) == (504, "NO_REPLY")
            assert answer.json()["status"] == "DEADLINE_EXCEEDED"
            assert 1.0 <= took < 5, took
            assert "Idempotency-Key" in answer.json()["message"]
        finally:
            assert await asyncio.to_thread(gateway.stop) == 0, gateway.log()
            await queue.delete(if_unused=False, if_empty=False)
            await exchange.delete()


def test_the_broker_unreachable_is_a_503_and_not_ready(tmp_path: Path) -> None:
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    gateway = start_gateway(WorkerNames.fresh(), tmp_path, ready=False, amqp_url=nowhere)
    try:
        assert http_status(f"{gateway.base}/readyz") == 503
        assert curl([f"{gateway.base}/readyz"]).json() == {"broker_ok": False}
        answer = curl([f"{gateway.base}/v1.0/outplans?token={token(uuid.uuid4())}"])
        assert (answer.status, answer.json()["reason"]) == (503, "BROKER_UNAVAILABLE")
        assert answer.json()["status"] == "UNAVAILABLE" and answer.headers["retry-after"] == "2"
        unauthenticated = curl([f"{gateway.base}/v1.0/outplans"])
        assert unauthenticated.status == 401  # who is asking is checked first, broker or not
    finally:
        assert gateway.stop() == 0, gateway.log()
    assert "broker unreachable; retrying" in gateway.log()
    assert "guest:guest" not in gateway.log()


def test_an_exchange_nobody_declared_is_a_503_each_time(tmp_path: Path) -> None:
    gateway = start_gateway(WorkerNames.fresh(), tmp_path)  # no worker declared these names
    try:
        url = f"{gateway.base}/v1.0/outplans?token={token(uuid.uuid4())}"
        for _ in range(3):  # the channel the broker closes is opened again: no answer hangs
            answer = curl([url])
            assert (answer.status, answer.json()["reason"]) == (503, "BROKER_UNAVAILABLE"), answer.body
            assert "does not exist" in answer.json()["message"], answer.body
        assert http_status(f"{gateway.base}/readyz") == 200
    finally:
        assert gateway.stop() == 0, gateway.log()


async def test_a_connection_lost_mid_call_is_a_503_at_once_and_the_gateway_reconnects(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    async with AmqpCutter(BASIC_PUBLISH) as cutter:  # every connection through it drops at its first publish
        gateway = await asyncio.to_thread(start_gateway, worker.names, tmp_path, amqp_url=cutter.url)
        try:
            url = f"{gateway.base}/v1.0/outplans?token={token(uuid.uuid4())}"
            for attempt in (1, 2):
                while await asyncio.to_thread(http_status, f"{gateway.base}/readyz") != 200:
                    await asyncio.sleep(0.05)  # connected (again)
                started = time.monotonic()
                answer = await asyncio.to_thread(curl, [url])
                assert (answer.status, answer.json()["reason"]) == (503, "BROKER_UNAVAILABLE"), answer.body
                assert time.monotonic() - started < 5, "answered at once, not after the 10 s reply timeout"
                assert "Idempotency-Key" in answer.json()["message"]
                assert cutter.cuts == attempt
        finally:
            assert await asyncio.to_thread(gateway.stop) == 0, gateway.log()
    assert "broker connection lost; reconnecting" in gateway.log()


@pytest.mark.parametrize("uvloop", ["true", "false"])
def test_keep_alive_answers_do_not_wait_for_a_delayed_ack(
    worker: WorkerProcess, tmp_path: Path, uvloop: str
) -> None:
    """Each answer is written in two parts; without TCP_NODELAY the second waits ~40 ms for the
    client's delayed ACK on every request of a kept-alive connection."""
    gateway = start_gateway(worker.names, tmp_path, uvloop=uvloop)
    try:
        with socket.create_connection(("127.0.0.1", gateway.port)) as conn:
            took = []
            for _ in range(15):
                started = time.monotonic()
                conn.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while not answer.endswith(b'{"loop_ok":true}'):
                    answer += conn.recv(4096)
                took.append(time.monotonic() - started)
        assert sorted(took)[len(took) // 2] < 0.03, took
    finally:
        assert gateway.stop() == 0, gateway.log()


def test_a_login_the_broker_refuses_stops_the_gateway_with_78(tmp_path: Path) -> None:
    refused = AMQP_URL.replace("guest:guest@", "guest:not-the-password@")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OUTPLAN_")},
        "OUTPLAN_AMQP_URL": refused,
        "OUTPLAN_JWT_SECRET": "s" * 32,
        "OUTPLAN_GATEWAY_PORT": str(free_port()),
    }
    result = subprocess.run(gateway_command(), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    assert "RabbitMQ refused the login" in result.stderr and "not-the-password" not in result.stderr


def test_a_node_that_does_not_answer_is_passed_over(worker: WorkerProcess, tmp_path: Path) -> None:
    nodes = f"amqp://guest:guest@127.0.0.1:{free_port()}/,{AMQP_URL}"
    gateway = start_gateway(worker.names, tmp_path, amqp_url=nodes)
    try:
        assert curl([f"{gateway.base}/v1.0/outplans?token={token(uuid.uuid4())}"]).status == 200
    finally:
        assert gateway.stop() == 0, gateway.log()
