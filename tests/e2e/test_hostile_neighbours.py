"""One odd message never degrades the service for the others: it is refused alone, on its first delivery.

Each test is a row of what producers really send (bytes that are not UTF-8, a timestamp in
microseconds, headers that cannot be encoded again, a reply queue that refuses, their own
``x-delivery-count``, 50 MiB bodies) or of what the broker does (close a connection).
"""

import asyncio
import datetime
import json
import re
import struct
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from contracts import Reply
from tests.e2e.conftest import Collector
from tests.support import raw_amqp
from tests.support.commands import SOURCE, create_json
from tests.support.faulty_worker import MARKER, InjectedFault
from tests.support.workers import WorkerProcess, delete_names, faulty_worker_command, start_worker
from worker.client import OutplanClient
from worker.messaging.outgoing import DEAD_LETTER_BODY_MAX

pytestmark = pytest.mark.e2e

NOT_UTF8 = b"\xc3(bad"
MICROSECONDS = 1_764_470_000_000_000  # a timestamp sent in µs: pamqp reads it as ms, far past year 9999


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    """The sum of one metric's samples with these labels, 0 when it has none."""
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).read().decode()
    )
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


class Replies:
    """Every reply that reaches one exclusive queue, by correlation id."""

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        self.by_correlation: dict[str, list[Reply]] = {}
        self.queue_name = ""

    async def start(self) -> "Replies":
        queue = await self.channel.declare_queue(exclusive=True)
        self.queue_name = queue.name
        await queue.consume(self._on_reply, no_ack=True)
        return self

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        self.by_correlation.setdefault(message.correlation_id or "", []).append(
            Reply.model_validate_json(message.body)
        )

    async def wait(self, correlation_id: str, seconds: float = 10) -> Reply:
        async with asyncio.timeout(seconds):
            while not self.by_correlation.get(correlation_id):
                await asyncio.sleep(0.02)
        return self.by_correlation[correlation_id][0]


@pytest.fixture
async def replies(connection: AbstractRobustConnection) -> Replies:
    return await Replies(await connection.channel()).start()


async def dead_letter_of(
    dead_letters: Collector, correlation_id: str, seconds: float = 10
) -> AbstractIncomingMessage:
    return await dead_letters.wait_for_message(correlation_id=correlation_id, seconds=seconds)


def unreadable_message_id(correlation_id: str, reply_to: str) -> raw_amqp.RawProperties:
    return raw_amqp.replaced(
        b"PLACEHOLDER",
        NOT_UTF8,
        short_string=True,
        message_id="PLACEHOLDER",
        correlation_id=correlation_id,
        reply_to=reply_to,
        content_type="application/json",
    )


def microsecond_timestamp(correlation_id: str, reply_to: str) -> raw_amqp.RawProperties:
    moment = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    return raw_amqp.replaced(
        struct.pack(">Q", int(moment.timestamp())),
        struct.pack(">Q", MICROSECONDS),
        short_string=False,
        timestamp=moment,
        message_id=str(uuid.uuid4()),
        correlation_id=correlation_id,
        reply_to=reply_to,
        content_type="application/json",
    )


def unreadable_header_key(correlation_id: str, reply_to: str) -> raw_amqp.RawProperties:
    return raw_amqp.with_headers(
        [(NOT_UTF8, b"t\x01")],
        message_id=str(uuid.uuid4()),
        correlation_id=correlation_id,
        reply_to=reply_to,
        content_type="application/json",
    )


POISON = {  # what is sent, the property named, the header carrying it as sent (and its value)
    "message_id not UTF-8": (unreadable_message_id, "message_id", ("x-original-message-id", NOT_UTF8)),
    "timestamp in microseconds": (microsecond_timestamp, "timestamp", ("x-original-timestamp", MICROSECONDS)),
    "header key not UTF-8": (unreadable_header_key, "headers[\\xc3(bad]", None),
}


@pytest.mark.parametrize("case", POISON)
async def test_a_property_that_cannot_be_read_is_refused_alone_while_others_are_served(
    case: str,
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    client: OutplanClient,
    replies: Replies,
    dead_letters: Collector,
    customer_id: uuid.UUID,
) -> None:
    build, field, original = POISON[case]
    reconnects = metric(worker, "outplan_reconnects_total")
    correlation_id = str(uuid.uuid4())
    channel = await connection.channel()
    await raw_amqp.publish(
        channel,
        worker.names.command_exchange,
        "outplan.create",
        create_json(customer_id),
        build(correlation_id, replies.queue_name),
    )
    sent = time.monotonic()
    # Everybody else is served while it is in the queue: no pause beyond a second or two.
    slowest = 0.0
    for _ in range(20):
        started = time.monotonic()
        assert (await client.list(customer_id)).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 2.0, f"an ordinary command waited {slowest:.1f} s"

    reply = await replies.wait(correlation_id)
    assert reply.status_code == 400 and reply.error is not None
    assert (reply.error.status, reply.error.reason) == ("INVALID_ARGUMENT", "INVALID_PROPERTIES")
    assert [d.field for d in reply.error.details] == [field]
    assert field in reply.error.message
    dead = await dead_letter_of(dead_letters, correlation_id)
    assert time.monotonic() - sent < 5, "dead-lettered within seconds"
    assert dead.headers["x-error-reason"] == "INVALID_PROPERTIES"
    assert dead.headers["x-error-unreadable-properties"] == field
    if original is not None:  # the copy carries what could not be read, exactly as it was sent
        assert dead.headers[original[0]] == original[1]
    assert dead.body == create_json(customer_id)
    assert not dead.redelivered
    await asyncio.sleep(0.5)
    assert len(replies.by_correlation[correlation_id]) == 1, "answered once: never redelivered"
    assert metric(worker, "outplan_reconnects_total") == reconnects, "no connection was lost"
    assert (await client.list(customer_id)).data == {"result": [], "next_page_token": ""}  # nothing written


async def test_a_dead_letter_copy_leaves_out_headers_it_cannot_carry_and_keeps_its_reason(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    replies: Replies,
    dead_letters: Collector,
    customer_id: uuid.UUID,
) -> None:
    correlation_id = str(uuid.uuid4())
    raw_bytes = b"\xff\xfe" * 2000
    properties = raw_amqp.with_headers(
        [
            (b"huge", raw_amqp.double(1e300)),
            (b"raw", raw_amqp.long_string(raw_bytes)),
            (b"kept", raw_amqp.long_string(b"plain")),
        ],
        message_id=str(uuid.uuid4()),
        correlation_id=correlation_id,
        reply_to=replies.queue_name,
        content_type="application/json",
    )
    channel = await connection.channel()
    await raw_amqp.publish(
        channel,
        worker.names.command_exchange,
        "outplan.create",
        create_json(customer_id, dial_timeout=-1),
        properties,
    )
    reply = await replies.wait(correlation_id)
    assert reply.status_code == 400 and reply.error is not None and reply.error.reason == "VALIDATION_FAILED"
    dead = await dead_letter_of(dead_letters, correlation_id)
    assert dead.headers["x-error-reason"] == "VALIDATION_FAILED"
    assert dead.headers["x-error-dropped-headers"] == "huge"  # a double beyond the range pamqp writes
    assert dead.headers["raw"] == raw_bytes and dead.headers["kept"] == "plain"  # carried as they came
    await asyncio.sleep(0.5)
    assert len(replies.by_correlation[correlation_id]) == 1, "one reply, not one per redelivery"
    assert sum(m.correlation_id == correlation_id for m in dead_letters.messages) == 1


async def test_a_refused_reply_does_not_requeue_the_command_whose_outcome_stands(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    client: OutplanClient,
    customer_id: uuid.UUID,
) -> None:
    channel = await connection.channel()
    refusing = await channel.declare_queue(
        f"test-refusing-replies-{uuid.uuid4().hex[:8]}",
        auto_delete=True,  # never consumed, so never auto-deleted: x-expires removes it
        arguments={"x-max-length": 0, "x-overflow": "reject-publish", "x-expires": 60_000},
    )
    failed = metric(worker, "outplan_replies_failed_total", reason="nacked")
    message_id = str(uuid.uuid4())
    await channel.default_exchange.publish(
        aio_pika.Message(
            create_json(customer_id, name="reply refused"),
            message_id=message_id,
            reply_to=refusing.name,
            content_type="application/json",
            type="outplan.create",
        ),
        routing_key=worker.names.command_queue,
    )
    async with asyncio.timeout(10):
        while not (listed := (await client.list(customer_id)).data["result"]):
            await asyncio.sleep(0.05)
    assert [o["name"] for o in listed] == ["reply refused"]  # applied once
    await asyncio.sleep(1.0)
    handled = [e for e in worker.log_events("command handled") if e.get("message_id") == message_id]
    assert len(handled) == 1, "handled once: the refused reply did not send it round again"
    lost = [e for e in worker.log_events("reply not published") if e.get("message_id") == message_id]
    assert len(lost) == 1 and lost[0]["reason"] == "nacked" and lost[0]["level"] == "warning"
    assert metric(worker, "outplan_replies_failed_total", reason="nacked") == failed + 1


async def test_a_large_invalid_body_is_dead_lettered_as_a_bounded_prefix(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    replies: Replies,
    dead_letters: Collector,
) -> None:
    body = b'{"detail": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    correlation_id = str(uuid.uuid4())
    channel = await connection.channel()
    await channel.default_exchange.publish(
        aio_pika.Message(
            body,
            message_id=str(uuid.uuid4()),
            correlation_id=correlation_id,
            reply_to=replies.queue_name,
            content_type="application/json",
        ),
        routing_key=worker.names.command_queue,
    )
    reply = await replies.wait(correlation_id, seconds=30)
    assert reply.error is not None and reply.error.reason == "BODY_TOO_LARGE"
    dead = await dead_letter_of(dead_letters, correlation_id, seconds=30)
    assert len(dead.body) == DEAD_LETTER_BODY_MAX and body.startswith(dead.body)
    assert dead.headers["x-original-body-size"] == len(body)


# ---- workers of their own ----------------------------------------------------------------------


@pytest.fixture
def own_worker(session_database: str, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for running in started:
        running.stop()
        asyncio.run(delete_names(running.names))


async def test_only_the_brokers_delivery_count_counts(
    own_worker: list[WorkerProcess],
    session_database: str,
    tmp_path: Path,
    connection: AbstractRobustConnection,
    replies: Replies,
    customer_id: uuid.UUID,
) -> None:
    worker = await asyncio.to_thread(
        start_worker, session_database, tmp_path, launcher=faulty_worker_command, retry_limit="3"
    )
    own_worker.append(worker)
    dead_letters = Collector()
    channel = await connection.channel()
    dead_queue = await channel.declare_queue(exclusive=True)
    await dead_queue.bind(worker.names.dead_letter_exchange, routing_key="")
    await dead_queue.consume(dead_letters, no_ack=True)
    correlation_id = str(uuid.uuid4())
    await channel.default_exchange.publish(
        aio_pika.Message(
            create_json(customer_id, name=MARKER),
            message_id=str(uuid.uuid4()),
            correlation_id=correlation_id,
            reply_to=replies.queue_name,
            content_type="application/json",
            type="outplan.create",
            headers={"x-delivery-count": 4},
        ),
        routing_key=worker.names.command_queue,
    )
    reply = await replies.wait(correlation_id, seconds=20)
    assert reply.status_code == 500
    dead = await dead_letter_of(dead_letters, correlation_id)
    assert dead.headers["x-exception-class"] == InjectedFault.__name__
    assert dead.headers["x-deliveries"] == 3  # all three deliveries, not "the 5th" after one
    assert worker.log().count('"handler failed; redelivering"') == 2


def broker_connections(pid: int) -> list[tuple[str, str]]:
    """(connection pid, name) of the broker connections a worker process opened."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for line in out.splitlines():
        match = re.search(r'"connection_name","(outplan-worker (\w+) on \S+ pid (\d+))"', line)
        if match and int(match.group(3)) == pid:
            found.append((line.split("\t")[0], match.group(2)))
    return found


async def test_an_ordinary_reconnect_is_one_warning_and_counted(
    own_worker: list[WorkerProcess],
    session_database: str,
    tmp_path: Path,
    connection: AbstractRobustConnection,
    customer_id: uuid.UUID,
) -> None:
    worker = await asyncio.to_thread(start_worker, session_database, tmp_path)
    own_worker.append(worker)
    connections = await asyncio.to_thread(broker_connections, worker.process.pid)
    assert sorted(role for _, role in connections) == ["consumer", "publisher", "relay"]
    for broker_pid, _ in connections:
        await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "-q", "close_connection", broker_pid, "test"],
            check=True,
            capture_output=True,
        )
    async with asyncio.timeout(15):
        while metric(worker, "outplan_reconnects_total") < 3:
            await asyncio.sleep(0.1)
    client = OutplanClient(connection, exchange=worker.names.command_exchange)
    await client.start()
    assert (await client.create(customer_id, name="after", source=SOURCE)).status_code == 201
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    lost = [e for e in lines if e["event"] == "broker connection lost; reconnecting"]
    assert sorted(e["connection"] for e in lost) == ["consumer", "publisher", "relay"]
    assert all(e["level"] == "warning" for e in lost)
    assert [e for e in lines if e["level"] in ("error", "critical")] == []
    assert not [e for e in lines if "exception" in e], "no library tracebacks"
    for role in ("consumer", "publisher", "relay"):
        assert metric(worker, "outplan_reconnects_total", peer=f"broker:{role}") == 1
