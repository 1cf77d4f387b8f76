"""``outplanctl`` and ``OutplanClient`` send the caller's trace context with every command.

What reaches the broker is checked on a copy of each command: a queue of the test's own, bound to
the worker's command exchange with the command's routing key, gets the same message the worker
does.
"""

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from opentelemetry import trace

from contracts import names
from tests.support.spans import remote_parent
from tests.support.workers import WorkerProcess
from worker.client import OutplanClient, expect

from .test_outplanctl import CTL

pytestmark = pytest.mark.e2e

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"
ROOT = Path(__file__).resolve().parents[2]


async def copies(connection: AbstractRobustConnection, worker: WorkerProcess, command: str) -> AbstractQueue:
    """An exclusive queue (gone with the connection) that gets a copy of each ``command`` sent."""
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(worker.names.command_exchange, routing_key=command)
    return queue


async def copy_for(queue: AbstractQueue, customer: str) -> AbstractIncomingMessage:
    """The copy of the command this ``customer`` sent (other tests' copies are skipped)."""
    async with asyncio.timeout(10):
        while True:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.05)
            elif json.loads(message.body).get("customer_id") == customer:
                return message


async def outplanctl(worker: WorkerProcess, customer: str, **environ: str) -> None:
    env = {**worker.env, "OUTPLAN_CUSTOMER_ID": customer, **environ}
    result = await asyncio.to_thread(
        subprocess.run, [CTL, "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


async def test_outplanctl_sends_the_traceparent_of_its_environment(
    worker: WorkerProcess, connection: AbstractRobustConnection
) -> None:
    queue = await copies(connection, worker, names.LIST)
    customer = str(uuid.uuid4())
    await outplanctl(worker, customer, TRACEPARENT=TRACEPARENT, TRACESTATE="vendor=abc")
    headers = (await copy_for(queue, customer)).headers
    assert (headers.get("traceparent"), headers.get("tracestate")) == (TRACEPARENT, "vendor=abc")


async def test_outplanctl_without_a_traceparent_sends_none(
    worker: WorkerProcess, connection: AbstractRobustConnection
) -> None:
    queue = await copies(connection, worker, names.LIST)
    customer = str(uuid.uuid4())
    await outplanctl(worker, customer)  # the test process's environment has no TRACEPARENT either
    assert "traceparent" not in (await copy_for(queue, customer)).headers


async def test_the_client_sends_the_current_span_context(
    worker: WorkerProcess, client: OutplanClient, connection: AbstractRobustConnection
) -> None:
    queue = await copies(connection, worker, names.CREATE)
    customer = str(uuid.uuid4())
    with trace.use_span(remote_parent(TRACE_ID, SPAN_ID)):
        expect(await client.create(customer, source={"type": "tel", "target": "+15559876543"}))
    assert (await copy_for(queue, customer)).headers.get("traceparent") == TRACEPARENT
    listed = await copies(connection, worker, names.LIST)
    expect(await client.list(customer))  # outside the span: nothing to send
    assert "traceparent" not in (await copy_for(listed, customer)).headers


WITHOUT_OPENTELEMETRY = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # any `import opentelemetry...` now raises ImportError
from contracts.client import OutplanClient, expect

async def main(url: str, exchange: str, customer: str) -> None:
    client = await OutplanClient.connect(url, exchange=exchange)
    async with client:
        print(expect(await client.list(customer)))
    assert not [m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m] is not None]

asyncio.run(main(*sys.argv[1:]))
"""


async def test_the_client_works_without_opentelemetry(
    worker: WorkerProcess, connection: AbstractRobustConnection
) -> None:
    queue = await copies(connection, worker, names.LIST)
    customer = str(uuid.uuid4())
    argv = [sys.executable, "-c", WITHOUT_OPENTELEMETRY, worker.env["OUTPLAN_AMQP_URL"]]
    argv += [worker.names.command_exchange, customer]
    result = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'result': [], 'next_page_token': ''}"
    assert "traceparent" not in (await copy_for(queue, customer)).headers
