"""A producer that is not Python (Node.js with amqplib) drives the worker from the contract alone."""

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from contracts import names
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.e2e
NODE_DIR = Path(__file__).parents[1] / "node"


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    assert node, "Node.js is needed for this test (see .ci/run)"
    installed = NODE_DIR / "node_modules"
    if not all((installed / p).exists() for p in ("amqplib", "@opentelemetry/api", "@opentelemetry/core")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300)
    return node


def test_a_node_producer_creates_and_sees_the_event(node: str, worker: WorkerProcess) -> None:
    customer = str(uuid.uuid4())
    env = {**worker.env, "CUSTOMER_ID": customer}
    result = subprocess.run(
        [node, "producer.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    reply, event = seen["reply"], seen["event"]
    assert reply["status_code"] == 201 and seen["replyContentType"] == "application/json"
    assert reply["data"]["source"]["target"] == "+15559876543" and reply["data"]["customer_id"] == customer
    assert event["type"] == "outplan_created" and event["data"] == reply["data"]
    assert seen["eventProperties"] == {
        "messageId": event["id"],
        "type": "outplan_created",
        "contentType": "application/cloudevents+json",
        "correlationId": seen["messageId"],
    }


async def test_a_node_producer_sends_the_trace_context_it_is_given(
    node: str, worker: WorkerProcess, connection: AbstractRobustConnection
) -> None:
    # A copy of the command, from a queue of the test's own bound like the worker's: what the
    # producer put on the wire, whatever the worker does with it.
    channel = await connection.channel()
    copies = await channel.declare_queue(exclusive=True)
    await copies.bind(worker.names.command_exchange, routing_key=names.CREATE)
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    customer = str(uuid.uuid4())
    env = {**worker.env, "CUSTOMER_ID": customer, "TRACEPARENT": traceparent, "TRACESTATE": "node=1"}
    result = await asyncio.to_thread(
        subprocess.run,
        [node, "producer.mjs"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["reply"]["status_code"] == 201
    async with asyncio.timeout(10):
        while (copy := await copies.get(fail=False, no_ack=True)) is None or copy.message_id != seen[
            "messageId"
        ]:
            await asyncio.sleep(0.05)
    assert copy.headers.get("traceparent") == traceparent and copy.headers.get("tracestate") == "node=1"
    # The worker answers within the same trace once it propagates the context (absent before).
    replied = (seen.get("replyHeaders") or {}).get("traceparent")
    assert replied is None or replied.split("-")[1] == trace_id


async def test_a_node_producer_without_trace_context_sends_none(
    node: str, worker: WorkerProcess, connection: AbstractRobustConnection
) -> None:
    channel = await connection.channel()
    copies = await channel.declare_queue(exclusive=True)
    await copies.bind(worker.names.command_exchange, routing_key=names.CREATE)
    env = {k: v for k, v in worker.env.items() if k not in ("TRACEPARENT", "TRACESTATE")}
    env["CUSTOMER_ID"] = str(uuid.uuid4())
    result = await asyncio.to_thread(
        subprocess.run,
        [node, "producer.mjs"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["sentHeaders"] == {}
    async with asyncio.timeout(10):
        while (copy := await copies.get(fail=False, no_ack=True)) is None or copy.message_id != seen[
            "messageId"
        ]:
            await asyncio.sleep(0.05)
    assert "traceparent" not in copy.headers
