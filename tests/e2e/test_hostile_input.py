"""Thousands of generated bodies: each gets a well-formed 2xx/4xx reply; the database stays valid."""

import asyncio
import json
import threading
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import aio_pika
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import CreateOutplan, Reply, names
from tests.conftest import AMQP_URL
from tests.support.commands import SOURCE
from tests.support.workers import WorkerProcess
from worker.client import OutplanClient

pytestmark = pytest.mark.e2e
T = TypeVar("T")
CUSTOMERS = [str(uuid.uuid4()) for _ in range(3)]
TRIED: Counter[str] = Counter()


class Sender:
    """An event loop in a thread, so synchronous hypothesis tests can await RPC replies."""

    def __init__(self, exchange: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client: OutplanClient = self.run(self._connect(exchange))

    async def _connect(self, exchange: str) -> OutplanClient:
        client = OutplanClient(await aio_pika.connect(AMQP_URL), exchange=exchange, timeout=15)
        await client.start()
        return client

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def send(self, command: str, body: bytes, content_type: str | None) -> Reply:
        return self.run(
            self.client.send(command, body, content_type=content_type, message_id=str(uuid.uuid4()))
        )

    def close(self) -> None:
        self.run(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(scope="module")
def sender(worker: WorkerProcess) -> Iterator[Sender]:
    sender = Sender(worker.names.command_exchange)
    yield sender
    sender.close()
    print(f"\nhostile inputs tried: {sum(TRIED.values())} ({dict(TRIED)})")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
edge_ints = st.sampled_from(
    [-1, 0, 1, 30, 999, 1000, 100, 101, 600000, 600001, 604800000, 604800001, 2**31, 2**63]
)
wrong_types: st.SearchStrategy[object] = st.sampled_from(
    ["30000", 30000.5, 30000.0, True, False, None, [], {}, "", "nan"]
)
texts = st.text(max_size=300) | st.sampled_from(
    ["x" * 255, "x" * 256, "x" * 4096, "x" * 4097, "\u0000", "'; DROP TABLE outplans; --"]
)
targets = st.sampled_from(
    [
        "+15559876543",
        "+1 (555) 987-6543",
        "5559876543",
        "+0123456789",
        "+123456",
        "+1234567890123456",
        "bob@Example.COM",
        "bob",
        "@",
        "",
    ]
) | st.text(max_size=40)
sources = (
    st.fixed_dictionaries(
        {"type": st.sampled_from(["tel", "sip", "fax", "", 1]), "target": targets},
        optional={"target_name": texts, "name": texts, "detail": texts, "extra": json_values},
    )
    | json_values
)
field_values = {
    "customer_id": st.sampled_from(CUSTOMERS) | st.text(max_size=40) | wrong_types,
    "id": st.uuids().map(str) | st.text(max_size=10),
    "name": texts | wrong_types,
    "detail": texts | wrong_types,
    "source": sources,
    "dial_timeout": edge_ints | wrong_types | st.integers(),
    "try_interval": edge_ints | wrong_types | st.integers(),
    **{f"max_try_count_{i}": edge_ints | wrong_types for i in range(5)},
    "include_deleted": st.booleans() | wrong_types,
    "page_size": edge_ints | wrong_types,
    "page_token": st.text(max_size=30) | st.sampled_from(["", "o1.AAAA", "2022-04-28 01:50:23.414000"]),
}
near_valid = st.fixed_dictionaries(
    {"customer_id": st.sampled_from(CUSTOMERS), "source": st.just(SOURCE)},
    optional={
        **{k: v for k, v in field_values.items() if k not in ("customer_id", "source")},
        "unknown_field": json_values,
    },
)
structured = st.fixed_dictionaries({}, optional=field_values)
commands = st.sampled_from(names.COMMAND_NAMES)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/json; charset=utf-16",
        ";;;",
        "application/cloudevents+json",
    ]
)
HYPOTHESIS = settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def check(reply: Reply) -> None:
    assert reply.status_code in (200, 201, 400, 404), reply
    if reply.status_code >= 400:
        assert reply.error is not None and reply.error.message and reply.data is None
        if reply.error.reason == "VALIDATION_FAILED":
            assert reply.error.details and all(d.field and d.message for d in reply.error.details)
    else:
        assert reply.error is None and reply.data is not None


@HYPOTHESIS
@given(command=commands, body=near_valid)
def test_near_valid_bodies(sender: Sender, command: str, body: dict[str, Any]) -> None:
    TRIED["near valid"] += 1
    check(sender.send(command, json.dumps(body).encode(), "application/json"))


@HYPOTHESIS
@given(command=commands, body=structured)
def test_every_field_at_and_past_its_bounds(sender: Sender, command: str, body: dict[str, Any]) -> None:
    TRIED["structured"] += 1
    check(sender.send(command, json.dumps(body).encode(), "application/json"))


@HYPOTHESIS
@given(command=commands, value=json_values, content_type=content_types)
def test_random_json_and_content_types(
    sender: Sender, command: str, value: Any, content_type: str | None
) -> None:
    TRIED["random json"] += 1
    check(sender.send(command, json.dumps(value).encode(), content_type))


@HYPOTHESIS
@given(command=commands, raw=st.binary(max_size=300))
def test_raw_bytes_and_invalid_utf8(sender: Sender, command: str, raw: bytes) -> None:
    TRIED["raw bytes"] += 1
    check(sender.send(command, raw, "application/json"))


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,  # too large and too deep
        b"[" * 60_000 + b"]" * 60_00,
        b'{"customer_id": "' + b"x" * 65_530 + b'"}',
        json.dumps({"customer_id": CUSTOMERS[0], "n": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}).encode(),
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ],
)
def test_huge_and_deeply_nested(sender: Sender, body: bytes) -> None:
    TRIED["huge or deep"] += 1
    reply = sender.send(names.CREATE, body, "application/json")
    assert reply.status_code == 400


async def test_the_database_holds_only_valid_outplans(session_database: str, sender: Sender) -> None:
    conn = await asyncpg.connect(session_database)
    try:
        rows = await conn.fetch("SELECT * FROM outplans WHERE customer_id = ANY($1::uuid[])", CUSTOMERS)
    finally:
        await conn.close()
    assert rows, "the generated inputs should have created some outplans"
    for row in rows:
        body = {
            "customer_id": str(row["customer_id"]),
            "name": row["name"],
            "detail": row["detail"],
            "source": {
                "type": row["source_type"],
                "target": row["source_target"],
                "target_name": row["source_target_name"],
                "name": row["source_name"],
                "detail": row["source_detail"],
            },
            "dial_timeout": row["dial_timeout"],
            "try_interval": row["try_interval"],
            **{f"max_try_count_{i}": row[f"max_try_count_{i}"] for i in range(5)},
        }
        again = CreateOutplan.model_validate_json(json.dumps(body))  # every stored row passes the contract
        assert again.source.target == row["source_target"]  # and is stored normalised
