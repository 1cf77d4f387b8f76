"""``outplanctl``: the tutorial's calls from the command line, and the typed Python client."""

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from subprocess import PIPE
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.conftest import AMQP_URL
from tests.support.amqp_cutter import BASIC_CONSUME, BASIC_PUBLISH, CHANNEL_OPEN, AmqpCutter
from tests.support.workers import WorkerProcess
from worker.client import InvalidArgument, NotFound, OutplanClient, expect

pytestmark = pytest.mark.e2e
CTL = shutil.which("outplanctl", path=str(Path(sys.executable).parent)) or "outplanctl"


def ctl(worker: WorkerProcess, customer: str, *args: str) -> tuple[int, Any, str]:
    env = {**worker.env, "OUTPLAN_CUSTOMER_ID": customer}
    result = subprocess.run([CTL, *args], env=env, capture_output=True, text=True, timeout=60)
    data = json.loads(result.stdout) if result.returncode == 0 else None
    return result.returncode, data, result.stderr


def test_the_tutorial_from_the_command_line(worker: WorkerProcess) -> None:
    customer = str(uuid.uuid4())
    dial = [
        "--source-type",
        "tel",
        "--source-target",
        "+15559876543",
        "--dial-timeout",
        "30000",
        "--try-interval",
        "600000",
        "--max-try-count",
        "5",
        "5",
        "5",
        "5",
        "5",
    ]
    code, created, _ = ctl(worker, customer, "create", "--name", "test outplan", "--detail", "d", *dial)
    assert code == 0 and created["name"] == "test outplan" and created["max_try_count_4"] == 5
    outplan_id = created["id"]
    assert ctl(worker, customer, "get", outplan_id)[1] == created
    assert ctl(worker, customer, "list")[1] == {"result": [created], "next_page_token": ""}
    code, basic, _ = ctl(worker, customer, "update-basic-info", outplan_id, "--name", "n2", "--detail", "d2")
    assert code == 0 and (basic["name"], basic["detail"]) == ("n2", "d2")
    code, changed, _ = ctl(
        worker, customer, "update-dial-info", outplan_id, *dial[:-5], "0", "1", "2", "3", "4"
    )
    assert code == 0 and [changed[f"max_try_count_{i}"] for i in range(5)] == [0, 1, 2, 3, 4]
    code, deleted, _ = ctl(worker, customer, "delete", outplan_id)
    assert code == 0 and deleted["tm_delete"] != "9999-01-01 00:00:00.000000"
    code, _, stderr = ctl(worker, customer, "get", outplan_id)
    assert code == 4 and "OUTPLAN_NOT_FOUND" in stderr


def test_errors_go_to_stderr_with_field_messages_and_a_status_exit_code(worker: WorkerProcess) -> None:
    customer = str(uuid.uuid4())
    code, _, stderr = ctl(
        worker,
        customer,
        "create",
        "--source-type",
        "tel",
        "--source-target",
        "+15559876543",
        "--dial-timeout",
        "30",
    )
    assert code == 3
    assert "VALIDATION_FAILED" in stderr and "dial_timeout: dial_timeout is in milliseconds" in stderr
    code, _, stderr = ctl(worker, customer, "get", "not-a-uuid")
    assert code == 3 and "id: id must be a UUID string" in stderr
    message_id = str(uuid.uuid4())
    base = ["--message-id", message_id, "create", "--source-type", "tel", "--source-target", "+15559876543"]
    assert ctl(worker, customer, *base)[0] == 0
    assert ctl(worker, customer, *base, "--name", "other")[0] == 5  # 409: the key was used for another body


def test_no_customer_or_no_worker(worker: WorkerProcess) -> None:
    result = subprocess.run(
        [CTL, "list"],
        env={k: v for k, v in worker.env.items() if k != "OUTPLAN_CUSTOMER_ID"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "--customer-id" in result.stderr
    env = {
        **worker.env,
        "OUTPLAN_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
        "OUTPLAN_CUSTOMER_ID": str(uuid.uuid4()),
    }
    result = subprocess.run([CTL, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 7 and "cannot reach the broker" in result.stderr


@pytest.mark.parametrize(
    ("broker", "said"),
    [
        ("closed port", "cannot reach the broker: AMQPConnectionError"),
        ("dropped at channel.open", "cannot reach the broker: AMQPConnectionError"),
        ("dropped at basic.consume", "cannot reach the broker: AMQPConnectionError"),
        ("dropped at basic.publish", "lost the broker connection: AMQPConnectionError"),
        ("no command exchange", "the broker refused the request: NOT_FOUND - no exchange 'test-no-such-"),
    ],
)
async def test_a_broker_that_fails_it_is_one_line_and_exit_7(broker: str, said: str) -> None:
    # The client's channel and reply consumer are opened after the connection: the broker can drop
    # the connection then too (a broker restarting, say). Each way gets the documented status and
    # one line, without the AMQP libraries' tracebacks.
    env = {**os.environ, "OUTPLAN_CUSTOMER_ID": str(uuid.uuid4()), "OUTPLAN_AMQP_URL": AMQP_URL}
    cutter = None
    async with contextlib.AsyncExitStack() as stack:
        if broker == "closed port":
            env["OUTPLAN_AMQP_URL"] = "amqp://guest:guest@127.0.0.1:1/"
        elif broker == "no command exchange":
            env["OUTPLAN_COMMAND_EXCHANGE"] = f"test-no-such-{uuid.uuid4().hex[:8]}"
        else:
            cut_at = {
                "channel.open": CHANNEL_OPEN,
                "basic.consume": BASIC_CONSUME,
                "basic.publish": BASIC_PUBLISH,
            }[broker.removeprefix("dropped at ")]
            cutter = await stack.enter_async_context(AmqpCutter(cut_at))
            env["OUTPLAN_AMQP_URL"] = cutter.url
        process = await asyncio.create_subprocess_exec(
            CTL, "--timeout", "10", "list", env=env, stdout=PIPE, stderr=PIPE
        )
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
    lines = stderr.decode().splitlines()
    assert process.returncode == 7, lines
    assert len(lines) == 1 and lines[0].startswith(f"outplanctl: {said}"), lines
    assert cutter is None or cutter.cuts == 1  # it was dropped where the test says


async def test_the_python_client_raises_typed_errors(
    client: OutplanClient, connection: AbstractRobustConnection
) -> None:
    customer = str(uuid.uuid4())
    created = expect(await client.create(customer, source={"type": "sip", "target": "a@B.example"}))
    assert created["source"]["target"] == "a@b.example"
    with pytest.raises(NotFound) as missing:
        expect(await client.get(customer, uuid.uuid4()))
    assert missing.value.status_code == 404 and missing.value.reason == "OUTPLAN_NOT_FOUND"
    with pytest.raises(InvalidArgument) as invalid:
        expect(await client.create(customer, source={"type": "tel", "target": "1"}, max_try_count_0=101))
    assert [d.field for d in invalid.value.details] == ["source.target", "max_try_count_0"]


async def test_a_retry_through_the_typed_methods_reuses_its_message_id(client: OutplanClient) -> None:
    # A producer that timed out sends the same command again under the same key: it gets the
    # original reply, and the outplan is created (and deleted) once.
    customer = str(uuid.uuid4())
    key = str(uuid.uuid4())
    source = {"type": "tel", "target": "+15559876543"}
    first = await client.create(customer, message_id=key, name="once", source=source)
    again = await client.create(customer, message_id=key, name="once", source=source)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.data == first.data
    listed = expect(await client.list(customer))
    assert [o["id"] for o in listed["result"]] == [first.data["id"]]
    delete_key = str(uuid.uuid4())
    deleted = await client.delete(customer, first.data["id"], message_id=delete_key)
    assert deleted.status_code == 200
    assert await client.delete(customer, first.data["id"], message_id=delete_key) == deleted
    # A fresh key is a new command: the outplan is gone.
    assert (await client.delete(customer, first.data["id"])).status_code == 404


async def test_the_client_times_out_and_drops_a_late_reply(
    client: OutplanClient, connection: AbstractRobustConnection
) -> None:
    # An exchange whose queue nobody consumes: the command is routed, and no worker answers it.
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        f"test-unanswered-{uuid.uuid4().hex[:8]}", "topic", auto_delete=True
    )
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="#")
    slow = OutplanClient(connection, exchange=exchange.name, timeout=0.3)
    await slow.start()
    customer = str(uuid.uuid4())
    with pytest.raises(TimeoutError):
        await slow.list(customer)
    late = await queue.get(timeout=5)

    async def answer(request: aio_pika.abc.AbstractIncomingMessage, body: bytes) -> None:
        await channel.default_exchange.publish(
            aio_pika.Message(body, correlation_id=request.correlation_id, headers={"status_code": 200}),
            routing_key=request.reply_to or "",
        )

    await answer(late, b'{"status_code":200,"data":{"result":[],"next_page_token":"late"}}')
    await asyncio.sleep(0.2)  # the late reply arrives and is dropped without harm
    pending = asyncio.create_task(slow.list(customer))
    await answer(await _next(queue), b'{"status_code":200,"data":{"result":[],"next_page_token":"fresh"}}')
    assert expect(await pending) == {"result": [], "next_page_token": "fresh"}
    await channel.close()


async def _next(queue: aio_pika.abc.AbstractQueue) -> aio_pika.abc.AbstractIncomingMessage:
    for _ in range(100):
        message = await queue.get(fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError("the client sent nothing")
