"""Bad input is never a bug: whatever a message carries, it is answered once, never 500, never retried.

The first part turns the issue's rows into tests on the session's worker: a page token whose
time is out of range, a NUL in message_id, a NUL or a lone surrogate in a body field. Each is a
400 naming the field, on the first delivery, and the database never sees the value.

The second part feeds arbitrary page tokens and arbitrary AMQP property and header values to a
worker of its own (a message that breaks its connection must not stall the other tests) and
checks after every message: exactly one reply, never 500, a property that cannot be read is
``INVALID_PROPERTIES``, no redelivery logged, and the broker connection never re-established.
"""

import asyncio
import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from contracts import Reply, names
from tests.e2e.conftest import Collector
from tests.support import amqp_values as amqp
from tests.support.commands import SOURCE_JSON, create_body, create_json, source_json
from tests.support.page_tokens import (
    OUT_OF_RANGE_TOKEN,
    bare_times,
    near_tokens,
    token,
    token_like,
    well_formed,
)
from tests.support.workers import WorkerProcess, delete_names, start_worker

pytestmark = pytest.mark.e2e

# Log lines that mean a message was delivered more than once.
REDELIVERY_EVENTS = (
    "handler failed; redelivering",
    "message left for redelivery",
    "could not settle the message; returning it to the queue",
    "command dead-lettered after repeated failures",
)


def redeliveries(worker: WorkerProcess, message_id: str | None = None) -> list[dict[str, Any]]:
    found = [e for event in REDELIVERY_EVENTS for e in worker.log_events(event)]
    return [e for e in found if message_id is None or e.get("message_id") == message_id]


async def send_counting(
    connection: AbstractRobustConnection,
    exchange: str,
    command: str,
    body: bytes,
    *,
    message_id: str | None,
    linger: float = 1.0,
) -> list[Reply]:
    """Publish one command with its own reply queue; every reply it gets until ``linger`` s after the
    first."""
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(exclusive=True)
        got: list[Reply] = []

        async def on_reply(message: AbstractIncomingMessage) -> None:
            got.append(Reply.model_validate_json(message.body))

        await queue.consume(on_reply, no_ack=True)
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                correlation_id=str(uuid.uuid4()),
                content_type="application/json",
                reply_to=queue.name,
            ),
            routing_key=command,
        )
        async with asyncio.timeout(15):
            while not got:
                await asyncio.sleep(0.02)
        await asyncio.sleep(linger)
        return got
    finally:
        await channel.close()


async def stored_rows(database: str, customer_id: uuid.UUID) -> tuple[int, int, int]:
    """(outplans, events, idempotency records) the database holds for this customer."""
    conn = await asyncpg.connect(database)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM outplans WHERE customer_id = $1),"
            " (SELECT count(*) FROM outplan_events WHERE customer_id = $1),"
            " (SELECT count(*) FROM processed_commands WHERE customer_id = $1)",
            customer_id,
        )
    finally:
        await conn.close()
    assert row is not None
    return row[0], row[1], row[2]


def refused_naming(replies: list[Reply], field: str, rule: str) -> None:
    assert len(replies) == 1, f"{len(replies)} replies: {replies}"
    reply = replies[0]
    assert reply.status_code == 400, reply
    assert reply.error is not None and reply.error.reason == "VALIDATION_FAILED", reply
    assert [d.field for d in reply.error.details] == [field], reply
    assert reply.error.message.startswith(f"{field} ") and rule in reply.error.message, reply


# ---- the rows ---------------------------------------------------------------------------


async def test_a_page_token_out_of_range_is_a_400_naming_it_on_the_first_delivery(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    dead_letters: Collector,
    customer_id: uuid.UUID,
) -> None:
    message_id = str(uuid.uuid4())  # a query needs none; it tells this message apart in the log
    body = json.dumps({"customer_id": str(customer_id), "page_token": OUT_OF_RANGE_TOKEN}).encode()
    replies = await send_counting(
        connection, worker.names.command_exchange, names.LIST, body, message_id=message_id
    )
    refused_naming(replies, "page_token", "outside years 1 to 9999")
    copy = await dead_letters.wait_for_message(message_id)
    assert copy.headers["x-error-reason"] == "VALIDATION_FAILED" and "x-deliveries" not in copy.headers
    assert not redeliveries(worker, message_id)


async def test_a_nul_in_message_id_is_a_400_naming_it_and_never_reaches_the_database(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    dead_letters: Collector,
    session_database: str,
    customer_id: uuid.UUID,
) -> None:
    body = create_json(customer_id)
    replies = await send_counting(
        connection, worker.names.command_exchange, names.CREATE, body, message_id="abc\u0000def"
    )
    refused_naming(replies, "message_id", "must not contain the NUL character")
    copy = await dead_letters.wait_for_message("abc\u0000def")
    assert copy.headers["x-error-reason"] == "VALIDATION_FAILED"
    assert not redeliveries(worker, "abc\u0000def")
    assert await stored_rows(session_database, customer_id) == (0, 0, 0)


# The body text as sent: "\\u0000" and "\\ud800" are JSON escapes, decoded by the worker's parser.
BODY_CASES = [
    (names.CREATE, '"name": "a\\u0000b"', "name", "NUL"),
    (names.CREATE, '"detail": "\\u0000"', "detail", "NUL"),
    (names.CREATE, '"source": {"type": "sip", "target": "bob\\u0000@example.com"}', "source.target", "NUL"),
    *(
        (names.CREATE, '"source": ' + source_json(**{field: text}), f"source.{field}", "NUL")
        for field, text in [("target_name", "\\u0000"), ("name", "x\\u0000"), ("detail", "\\u0000x")]
    ),
    (names.UPDATE_BASIC_INFO, '"name": "ok", "detail": "\\u0000"', "detail", "NUL"),
    (names.LIST, '"page_token": "o1.\\u0000"', "page_token", "NUL"),
    (names.CREATE, '"name": "a\\ud800b"', "name", "lone UTF-16 surrogate"),
    (names.CREATE, '"detail": "\\udfff"', "detail", "lone UTF-16 surrogate"),
    (
        names.CREATE,
        '"source": {"type": "sip", "target": "\\udc00@example.com"}',
        "source.target",
        "lone UTF-16 surrogate",
    ),
    (names.UPDATE_BASIC_INFO, '"name": "\\ud83d", "detail": ""', "name", "lone UTF-16 surrogate"),
    (names.LIST, '"page_token": "\\ud800"', "page_token", "lone UTF-16 surrogate"),
]


@pytest.mark.parametrize(
    ("command", "fields", "field", "rule"), BODY_CASES, ids=[f"{c[0]}:{c[2]}:{c[3]}" for c in BODY_CASES]
)
async def test_a_string_the_database_cannot_hold_in_the_body_is_a_400_naming_the_field(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    session_database: str,
    customer_id: uuid.UUID,
    command: str,
    fields: str,
    field: str,
    rule: str,
) -> None:
    defaults = {
        names.CREATE: f'"source": {SOURCE_JSON}',
        names.UPDATE_BASIC_INFO: f'"id": "{uuid.uuid4()}"',
        names.LIST: '"page_size": 5',
    }[command]
    if '"source"' in fields:
        defaults = ""
    body = "{" + ", ".join(p for p in (f'"customer_id": "{customer_id}"', defaults, fields) if p) + "}"
    message_id = str(uuid.uuid4())
    replies = await send_counting(
        connection, worker.names.command_exchange, command, body.encode(), message_id=message_id
    )
    refused_naming(replies, field, rule)
    assert not redeliveries(worker, message_id)
    assert await stored_rows(session_database, customer_id) == (0, 0, 0)


# ---- arbitrary page tokens and property values, through a worker of its own ---------------------------


page_tokens = st.one_of(st.text(max_size=60), well_formed, near_tokens, token_like, bare_times)
properties = st.fixed_dictionaries(
    {},
    optional={
        "message_id": amqp.short_strings,
        "correlation_id": amqp.short_strings,
        "type": amqp.short_strings | st.sampled_from(names.COMMAND_NAMES),
        "content_type": st.sampled_from([None, "application/json"]) | amqp.short_strings,
        "content_encoding": amqp.short_strings,
        "app_id": amqp.short_strings,
        "timestamp": amqp.timestamps,
        "headers": amqp.headers,
        "priority": st.integers(0, 255),
        "delivery_mode": st.sampled_from([1, 2]),
    },
)
# No shrinking: a message that breaks the connection leaves the worker unanswering for a while,
# and every shrinking step would wait out the reply timeout again.
PROPERTY_TEST = settings(
    max_examples=60,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
RECONNECTS = re.compile(r"^outplan_reconnects_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


def reconnects(worker: WorkerProcess) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(v) for v in RECONNECTS.findall(text))


class Probe:
    """A worker of its own and a raw publisher on it; checks what every message did to the worker."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.publisher = amqp.RawPublisher(worker.names.command_exchange)
        self.customer_id = str(uuid.uuid4())
        self.reconnects = reconnects(worker)

    def send(self, command: str, body: dict[str, Any], props: dict[str, Any]) -> Reply:
        """Exactly one reply, not 500; no redelivery and no reconnect since the worker started."""
        answered = self.publisher.send(command, json.dumps(body).encode(), **props)
        count = len(answered.replies)
        assert count == 1, f"{count} replies (0: the worker went silent; more: it was delivered again)"
        reply = Reply.model_validate_json(answered.replies[0][1])
        assert reply.status_code in (200, 201, 400, 404), reply
        if reply.status_code == 400:
            assert reply.error is not None and reply.error.reason and reply.error.message
        assert not redeliveries(self.worker), redeliveries(self.worker)
        assert reconnects(self.worker) == self.reconnects, "the worker's broker connection was re-established"
        assert "reconnect" not in self.worker.log().lower(), "the worker logged a reconnect"
        return reply


@pytest.fixture
def probe(session_database: str, tmp_path: Path) -> Iterator[Probe]:
    worker = start_worker(session_database, tmp_path)
    probe = Probe(worker)
    yield probe
    probe.publisher.close()
    if worker.process.poll() is None:
        worker.process.kill()  # it may be stuck on a message it could not read; its state is not under test
        worker.process.wait(10)
    asyncio.run(delete_names(worker.names))


@PROPERTY_TEST
@given(text=page_tokens)
@example(text=OUT_OF_RANGE_TOKEN)
@example(text=token(-(2**63), uuid.UUID(int=0)))
@example(text="0000-01-01 00:00:00.000000")
@example(text="\ud800")
def test_any_page_token_is_answered_once_as_a_page_or_a_400_naming_it(probe: Probe, text: str) -> None:
    props = {"message_id": str(uuid.uuid4()), "content_type": "application/json"}
    reply = probe.send(names.LIST, {"customer_id": probe.customer_id, "page_token": text}, props)
    if reply.status_code != 200:
        assert reply.error is not None and reply.error.reason == "VALIDATION_FAILED", reply
        assert [d.field for d in reply.error.details] == ["page_token"], reply


def _body(command: str, customer_id: str) -> dict[str, Any]:
    if command == names.CREATE:
        return create_body(customer_id)
    if command == names.GET:
        return {"customer_id": customer_id, "id": str(uuid.uuid4())}
    return {"customer_id": customer_id, "page_size": 1}


@PROPERTY_TEST
@given(command=st.sampled_from([names.CREATE, names.GET, names.LIST]), props=properties, valid=st.booleans())
@example(command=names.CREATE, props={"message_id": "abc\u0000def"}, valid=True)
@example(
    command=names.CREATE,
    props={"message_id": str(uuid.uuid4()), "headers": {"x-delivery-count": 4}},
    valid=True,
)
# A NUL in message_id beside a timestamp no datetime holds: the timestamp is what is refused.
@example(command=names.CREATE, props={"message_id": "\x00", "timestamp": 2**63}, valid=True)
@example(
    command=names.GET,
    props={"message_id": "a\x00b", "headers": {"sent": [amqp.timestamp(2**64 - 1)]}},
    valid=True,
)
def test_any_property_and_header_values_are_answered_once(
    probe: Probe, command: str, props: dict[str, Any], valid: bool
) -> None:
    # An invalid body takes the refusal path too: a 400 reply and a dead-letter copy of the headers.
    body = _body(command, probe.customer_id) if valid else {"customer_id": "not a uuid"}
    reply = probe.send(command, body, props)
    cannot_read = amqp.unreadable(props)
    if cannot_read is not None:
        assert reply.status_code == 400, f"{cannot_read} cannot be read: {reply}"
        assert reply.error is not None and reply.error.reason == "INVALID_PROPERTIES", reply
    message_id = props.get("message_id")
    if (
        cannot_read is None
        and isinstance(message_id, str)
        and "\x00" in message_id
        and reply.status_code == 400
    ):
        assert reply.error is not None and reply.error.reason in (
            "VALIDATION_FAILED",
            "UNSUPPORTED_CONTENT_TYPE",
            "UNSUPPORTED_CONTENT_ENCODING",
        ), reply


# The property values the issue names, each on its own: a reply, not silence.
UNREADABLE = {
    "message_id not UTF-8": {"message_id": b"\xc3(bad"},
    "correlation_id not UTF-8": {"message_id": "m-1", "correlation_id": b"\xff\xfe"},
    "type not UTF-8": {"message_id": "m-2", "type": b"\x80outplan.create"},
    "timestamp out of range": {"message_id": "m-3", "timestamp": 1_764_470_000_000_000},
    "header key not UTF-8": {"message_id": "m-4", "headers": {b"\xc3(": "x"}},
    "nested header key not UTF-8": {"message_id": "m-5", "headers": {"outer": {b"\xff": 1}}},
    "timestamp past the year 9999": {"message_id": "m-6", "timestamp": 2**63},
    "header timestamp past the year 9999": {
        "message_id": "m-7",
        "headers": {"sent": amqp.timestamp(2**64 - 1)},
    },
}


@pytest.mark.parametrize("props", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_a_property_that_cannot_be_read_is_a_400_invalid_properties(
    probe: Probe, props: dict[str, Any]
) -> None:
    reply = probe.send(names.CREATE, _body(names.CREATE, probe.customer_id), props)
    assert reply.status_code == 400 and reply.error is not None, reply
    assert reply.error.reason == "INVALID_PROPERTIES", reply


# Values the worker can read but may not be able to copy: still exactly one reply.
ODD_BUT_READABLE = {
    "double 1e300": {"x-big": amqp.double(1e300)},
    "double max": {"x-max": amqp.double(1.7976931348623157e308)},
    "long string not UTF-8": {"x-bytes": amqp.long_string(b"\xff" * 300)},
    "byte array": {"x-array": b"\x00\xff"},
    "nested tables and arrays": {"a": {"b": [1, {"c": amqp.double(-1e300)}, [amqp.single(3.5)]]}},
    "x-delivery-count of our own": {"x-delivery-count": 4},
}


@pytest.mark.parametrize("headers", ODD_BUT_READABLE.values(), ids=ODD_BUT_READABLE.keys())
@pytest.mark.parametrize("valid", [True, False], ids=["valid body", "invalid body"])
def test_odd_header_values_are_answered_once(probe: Probe, headers: dict[str, Any], valid: bool) -> None:
    body = _body(names.CREATE, probe.customer_id) if valid else {"customer_id": probe.customer_id}
    reply = probe.send(names.CREATE, body, {"message_id": str(uuid.uuid4()), "headers": headers})
    assert reply.status_code == (201 if valid else 400), reply
