"""A producer that is not Python (Node.js with amqplib) drives the worker from the contract alone."""

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.e2e
NODE_DIR = Path(__file__).parents[1] / "node"


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    assert node, "Node.js is needed for this test (see .ci/run)"
    if not (NODE_DIR / "node_modules" / "amqplib").exists():
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
