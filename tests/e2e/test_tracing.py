"""Trace context end to end, through a worker started from its console script.

With the SDK, the worker exports its spans over OTLP/HTTP (``http/protobuf``) to a receiver in
the test, which decodes them with opentelemetry-proto. The tutorial flow is sent with a known
``traceparent`` (and ``tracestate``) per command; each command's trace must be the span tree the
README describes, replies and events must carry it, a replay must carry the original context, and
the log lines must carry the ids. With the SDK disabled, the incoming context passes through
unchanged and nothing is exported.
"""

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from contracts import names
from tests.conftest import AMQP_URL, create_database, drop_database
from tests.support.commands import SOURCE
from tests.support.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver, tree
from tests.support.workers import WorkerProcess, delete_names, start_worker, worker_command

pytestmark = pytest.mark.e2e

MUTATING = {names.CREATE, names.UPDATE_BASIC_INFO, names.UPDATE_DIAL_INFO, names.DELETE}
EVENT_OF = {
    names.CREATE: "outplan_created",
    names.UPDATE_BASIC_INFO: "outplan_updated",
    names.UPDATE_DIAL_INFO: "outplan_updated",
    names.DELETE: "outplan_deleted",
}


def otel_environment(receiver: OtlpReceiver, *, disabled: bool = False) -> dict[str, str]:
    return {
        "OTEL_SDK_DISABLED": "true" if disabled else "false",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans leave within a tenth of a second
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }


def started(database_url: str, log_dir: Path, environment: dict[str, str]) -> WorkerProcess:
    """``start_worker`` with ``environment`` over the test's own (the worker inherits it)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        return start_worker(database_url, log_dir)


@dataclass
class Sent:
    """One command as sent, with its trace context, and the reply it got."""

    command: str
    message_id: str
    trace_id: str
    parent_id: str
    tracestate: str
    reply: AbstractIncomingMessage | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-01"

    def reply_body(self) -> dict[str, Any]:
        assert self.reply is not None
        body: dict[str, Any] = json.loads(self.reply.body)
        return body


class Producer:
    """Publishes commands with trace headers and a reply queue; collects the replies and events."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.replies: dict[str, AbstractIncomingMessage] = {}
        self.events: list[AbstractIncomingMessage] = []

    async def __aenter__(self) -> "Producer":
        self.connection = await aio_pika.connect(AMQP_URL)
        self.channel = await self.connection.channel()
        self.reply_queue = await self.channel.declare_queue(exclusive=True)
        await self.reply_queue.consume(self._replied, no_ack=True)
        events = await self.channel.declare_queue(exclusive=True)
        await events.bind(self.worker.names.event_exchange, routing_key="#")
        await events.consume(self._event, no_ack=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.connection.close()

    async def _replied(self, message: AbstractIncomingMessage) -> None:
        self.replies[message.correlation_id or ""] = message

    async def _event(self, message: AbstractIncomingMessage) -> None:
        self.events.append(message)

    async def send(self, command: str, body: dict[str, Any], tracestate: str) -> Sent:
        sent = Sent(command, str(uuid.uuid4()), uuid.uuid4().hex, os.urandom(8).hex(), tracestate)
        exchange = await self.channel.get_exchange(self.worker.names.command_exchange, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                content_type="application/json",
                message_id=sent.message_id,
                correlation_id=sent.message_id,
                reply_to=self.reply_queue.name,
                headers={"traceparent": sent.traceparent, "tracestate": sent.tracestate},
            ),
            routing_key=command,
        )
        async with asyncio.timeout(10):
            while sent.message_id not in self.replies:
                await asyncio.sleep(0.01)
        sent.reply = self.replies[sent.message_id]
        return sent

    async def tutorial(self, customer_id: str) -> list[Sent]:
        """create, get, list, update basic info, update dial info, delete."""
        created = await self.send(
            names.CREATE, {"customer_id": customer_id, "name": "traced", "source": SOURCE}, "t=create"
        )
        outplan_id = created.reply_body()["data"]["id"]
        which = {"customer_id": customer_id, "id": outplan_id}
        return [
            created,
            await self.send(names.GET, which, "t=get"),
            await self.send(names.LIST, {"customer_id": customer_id}, "t=list"),
            await self.send(names.UPDATE_BASIC_INFO, {**which, "name": "renamed", "detail": "x"}, "t=basic"),
            await self.send(
                names.UPDATE_DIAL_INFO,
                {
                    **which,
                    "source": SOURCE,
                    "dial_timeout": 45000,
                    "try_interval": 60000,
                    **{f"max_try_count_{i}": i for i in range(5)},
                },
                'q="quoted"\\,t=dial',  # W3C allows " and \ in a value: JSON escapes them in the body
            ),
            await self.send(names.DELETE, which, "t=delete"),
        ]

    async def events_of(self, customer_id: str, count: int) -> list[AbstractIncomingMessage]:
        def mine() -> list[AbstractIncomingMessage]:
            return [e for e in self.events if json.loads(e.body)["customerid"] == customer_id]

        async with asyncio.timeout(10):
            while len(mine()) < count:
                await asyncio.sleep(0.02)
        return mine()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced_database() -> Iterator[str]:
    """A database of its own: a relay publishes every event of its database to its own exchange."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def traced_worker(
    traced_database: str, tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver
) -> Iterator[WorkerProcess]:
    running = started(traced_database, tmp_path_factory.mktemp("traced"), otel_environment(receiver))
    yield running
    code = running.stop()
    asyncio.run(delete_names(running.names))
    assert code == 0, running.log()


@pytest.fixture
async def replay_queue() -> AsyncIterator[str]:
    name = f"test-replay-{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        await channel.declare_queue(name, auto_delete=False)
        yield name
        await channel.queue_delete(name)


def expected_spans(sent: Sent) -> int:
    # process, reply publish; a change adds its batch write and its event's publish
    return 4 if sent.command in MUTATING else 2


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


async def test_the_tutorial_flow_is_traced_end_to_end(
    traced_worker: WorkerProcess, receiver: OtlpReceiver, traced_database: str, replay_queue: str
) -> None:
    names_ = traced_worker.names
    customer_id = str(uuid.uuid4())
    async with Producer(traced_worker) as producer:
        flow = await producer.tutorial(customer_id)
        events = await producer.events_of(customer_id, 4)
    assert [s.reply_body()["status_code"] for s in flow] == [201, 200, 200, 200, 200, 200]

    receiver.wait_for(
        lambda spans: all(
            len([x for x in spans if x.trace_id == s.trace_id]) >= expected_spans(s) for s in flow
        )
    )
    database = urlsplit(traced_database).path.lstrip("/")
    process_spans: dict[str, ReceivedSpan] = {}
    for sent in flow:
        spans = receiver.in_trace(sent.trace_id)
        assert len(spans) == expected_spans(sent), tree(spans)
        assert all(s.resource["service.name"] == "outplan-worker" for s in spans)

        process = one(spans, f"process {names_.command_queue}")
        process_spans[sent.message_id] = process
        assert process.kind == "CONSUMER"
        assert process.parent_span_id == sent.parent_id  # the producer's span
        status = sent.reply_body()["status_code"]
        assert process.status == "UNSET"
        assert {k: process.attributes.get(k) for k in _PROCESS_KEYS} == {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": names_.command_exchange,
            "messaging.rabbitmq.destination.routing_key": sent.command,
            "messaging.message.id": sent.message_id,
            "messaging.message.conversation_id": sent.message_id,
            "server.address": "127.0.0.1",
            "server.port": 5672,
            "outplan.command": sent.command,
            "outplan.reply.status_code": status,
        }

        reply = one(spans, "publish amq.default")
        assert (reply.kind, reply.parent_span_id) == ("PRODUCER", process.span_id)
        assert reply.attributes["messaging.rabbitmq.destination.routing_key"] == producer.reply_queue.name
        # The reply carries the process span's context, and the tracestate that came in.
        assert sent.reply is not None and sent.reply.headers["traceparent"] == (
            f"00-{sent.trace_id}-{process.span_id}-01"
        )
        assert sent.reply.headers["tracestate"] == sent.tracestate

        if sent.command not in MUTATING:
            continue
        batch = one(spans, f"BATCH {database}")
        assert (batch.kind, batch.parent_span_id) == ("CLIENT", process.span_id)
        assert batch.links == [(sent.trace_id, process.span_id)]
        assert batch.attributes["db.system.name"] == "postgresql"
        assert batch.attributes["db.namespace"] == database
        assert batch.start_ns >= process.start_ns and batch.end_ns <= process.end_ns

        published = one(spans, f"publish {names_.event_exchange}")
        assert (published.kind, published.parent_span_id) == ("PRODUCER", process.span_id)
        assert published.links == [(sent.trace_id, process.span_id)]
        assert published.attributes["messaging.rabbitmq.destination.routing_key"] == EVENT_OF[sent.command]
        assert published.attributes["messaging.message.conversation_id"] == sent.message_id
        (event,) = [e for e in events if e.correlation_id == sent.message_id]
        assert published.attributes["messaging.message.id"] == event.message_id
        # In the body, as stored: the command's context; in the headers: the publish span's.
        body = json.loads(event.body)
        assert (body["traceparent"], body["tracestate"]) == (
            f"00-{sent.trace_id}-{process.span_id}-01",
            sent.tracestate,
        )
        assert event.headers["traceparent"] == f"00-{sent.trace_id}-{published.span_id}-01"
        assert event.headers["tracestate"] == sent.tracestate

    # Every line written while a command's span was current carries its ids.
    for sent in flow:
        (handled,) = [
            e for e in traced_worker.log_events("command handled") if e["message_id"] == sent.message_id
        ]
        process = process_spans[sent.message_id]
        assert (handled["trace_id"], handled["span_id"]) == (sent.trace_id, process.span_id)

    print("\nOne trace per command of the tutorial flow, as exported by the worker:")
    for sent in flow:
        print(f"{sent.command} (trace {sent.trace_id}):")
        for line in tree(receiver.in_trace(sent.trace_id)):
            print("  " + line)

    # A replay re-publishes the stored bodies: the same CloudEvents traceparent, and publish spans
    # in the original traces.
    result = subprocess.run(
        [*worker_command(), "replay", "--customer-id", customer_id, "--queue", replay_queue],
        env=traced_worker.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    replayed = await _drain(replay_queue, 4)
    assert [m.body for m in replayed] == [e.body for e in events]
    changes = [s for s in flow if s.command in MUTATING]
    receiver.wait_for(
        lambda spans: all(
            len([x for x in spans if x.trace_id == s.trace_id]) >= expected_spans(s) + 1 for s in changes
        )
    )
    for sent, message in zip(changes, replayed, strict=True):
        process = process_spans[sent.message_id]
        assert json.loads(message.body)["traceparent"] == f"00-{sent.trace_id}-{process.span_id}-01"
        again = [s for s in receiver.in_trace(sent.trace_id) if s.name == "publish amq.default" and s.links]
        assert len(again) == 1, tree(receiver.in_trace(sent.trace_id))
        assert again[0].parent_span_id == process.span_id
        assert again[0].links == [(sent.trace_id, process.span_id)]
        assert again[0].attributes["messaging.rabbitmq.destination.routing_key"] == replay_queue
        assert message.headers["traceparent"] == f"00-{sent.trace_id}-{again[0].span_id}-01"
        assert message.headers["x-replayed"] is True


_PROCESS_KEYS = (
    "messaging.system",
    "messaging.operation.type",
    "messaging.destination.name",
    "messaging.rabbitmq.destination.routing_key",
    "messaging.message.id",
    "messaging.message.conversation_id",
    "server.address",
    "server.port",
    "outplan.command",
    "outplan.reply.status_code",
)


async def _drain(queue_name: str, count: int) -> list[AbstractIncomingMessage]:
    taken: list[AbstractIncomingMessage] = []
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        async with asyncio.timeout(10):
            while len(taken) < count:
                message = await queue.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                else:
                    taken.append(message)
    return taken


async def test_with_the_sdk_disabled_the_context_passes_through_unchanged(
    fresh_database: str, tmp_path: Path
) -> None:
    with otlp_receiver() as receiver:
        worker = await asyncio.to_thread(
            started, fresh_database, tmp_path, otel_environment(receiver, disabled=True)
        )
        try:
            customer_id = str(uuid.uuid4())
            async with Producer(worker) as producer:
                created = await producer.send(
                    names.CREATE, {"customer_id": customer_id, "source": SOURCE}, "congo=t61rcWkgMzE"
                )
                got = await producer.send(
                    names.GET, {"customer_id": customer_id, "id": created.reply_body()["data"]["id"]}, "a=b"
                )
                (event,) = await producer.events_of(customer_id, 1)
            for sent in (created, got):
                assert sent.reply is not None
                assert sent.reply.headers["traceparent"] == sent.traceparent  # unchanged
                assert sent.reply.headers["tracestate"] == sent.tracestate
            body = json.loads(event.body)
            assert (body["traceparent"], body["tracestate"]) == (created.traceparent, created.tracestate)
            assert event.headers["traceparent"] == created.traceparent
            assert event.headers["tracestate"] == created.tracestate
            # Log lines in the command's context carry the incoming ids: the caller's span.
            handled = {e["message_id"]: e for e in worker.log_events("command handled")}
            for sent in (created, got):
                line = handled[sent.message_id]
                assert (line["trace_id"], line["span_id"]) == (sent.trace_id, sent.parent_id)
        finally:
            code = await asyncio.to_thread(worker.stop)
            await delete_names(worker.names)
        assert code == 0, worker.log()
        assert receiver.requests == 0  # nothing recorded, nothing exported
