"""Through a running worker: a body means one thing to every reader, and a retry that means the
same thing is the same command, however it is spelled."""

import gzip
import json
import uuid
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from contracts import Reply
from tests.e2e.conftest import Collector, WorkerProcess
from tests.support.commands import SOURCE, create_body, create_json, create_text
from tests.support.sending import send_raw
from tests.support.spellings import spelled_otherwise
from worker.client import OutplanClient

pytestmark = pytest.mark.e2e


async def send(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    body: bytes,
    *,
    command: str = "outplan.create",
    **props: Any,
) -> Reply:
    props.setdefault("content_type", "application/json")
    _, reply = await send_raw(
        connection, exchange=worker.names.command_exchange, routing_key=command, body=body, **props
    )
    return reply


def refused(reply: Reply, reason: str) -> list[str]:
    """The reply is a 400 for ``reason``; the fields its details name."""
    assert reply.status_code == 400 and reply.error is not None, reply
    assert (reply.error.status, reply.error.reason) == ("INVALID_ARGUMENT", reason), reply
    return [d.field for d in reply.error.details]


async def test_a_customer_id_twice_is_refused_and_nobody_gets_an_outplan(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    client: OutplanClient,
    dead_letters: Collector,
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    body = create_text(f'"customer_id": "{second}"', customer_id=first).encode()
    message_id, reply = await send_raw(
        connection,
        exchange=worker.names.command_exchange,
        routing_key="outplan.create",
        body=body,
        content_type="application/json",
    )
    assert refused(reply, "MALFORMED_JSON") == ["customer_id"]
    assert reply.error is not None and "the key customer_id appears more than once" in reply.error.message
    for customer in (first, second):
        assert (await client.list(customer)).data == {"result": [], "next_page_token": ""}
    dead = await dead_letters.wait_for_message(message_id)
    assert dead.headers["x-error-reason"] == "MALFORMED_JSON"


async def test_a_key_twice_inside_the_source_is_refused_naming_its_path(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    customer_id: uuid.UUID,
) -> None:
    body = (
        f'{{"customer_id": "{customer_id}", "source": {{"type": "sip", "target": "bob@example.com", '
        f'"type": "tel"}}}}'.encode()
    )
    assert refused(await send(worker, connection, body), "MALFORMED_JSON") == ["source.type"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_not_json(
    token: str,
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    customer_id: uuid.UUID,
) -> None:
    body = create_text(f'"dial_timeout": {token}', customer_id=customer_id).encode()
    reply = await send(worker, connection, body)
    assert refused(reply, "MALFORMED_JSON") == ["dial_timeout"]
    assert (
        reply.error is not None
        and f"dial_timeout is {token}, which is not a JSON number" in reply.error.message
    )


@pytest.mark.parametrize("compressed", [False, True], ids=["plain body", "gzip body"])
async def test_a_content_encoding_is_refused_not_guessed(
    compressed: bool,
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    client: OutplanClient,
    customer_id: uuid.UUID,
    dead_letters: Collector,
) -> None:
    body = create_json(customer_id)
    message_id, reply = await send_raw(
        connection,
        exchange=worker.names.command_exchange,
        routing_key="outplan.create",
        body=gzip.compress(body) if compressed else body,
        content_type="application/json",
        content_encoding="gzip",
    )
    assert refused(reply, "UNSUPPORTED_CONTENT_ENCODING") == ["content_encoding"]
    assert reply.error is not None and "content_encoding 'gzip' is not supported" in reply.error.message
    assert (await client.list(customer_id)).data == {"result": [], "next_page_token": ""}
    dead = await dead_letters.wait_for_message(message_id)
    assert dead.headers["x-error-reason"] == "UNSUPPORTED_CONTENT_ENCODING"


@pytest.mark.parametrize(
    ("content_type", "content_encoding"),
    [
        ("application/json; charset=utf8", None),
        ('Application/JSON; Charset="UTF-8"', None),
        ("application/json", "identity"),
    ],
)
async def test_json_in_utf8_is_served_however_it_is_labelled(
    content_type: str,
    content_encoding: str | None,
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    customer_id: uuid.UUID,
) -> None:
    props = {"content_encoding": content_encoding} if content_encoding else {}
    reply = await send(worker, connection, create_json(customer_id), content_type=content_type, **props)
    assert reply.status_code == 201, reply


async def test_a_retry_that_means_the_same_gets_the_original_reply(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    client: OutplanClient,
    events: Collector,
    customer_id: uuid.UUID,
) -> None:
    fields = create_body(customer_id, name="renewals", dial_timeout=45000)
    message_id = str(uuid.uuid4())
    first = await send(worker, connection, json.dumps(fields).encode(), message_id=message_id)
    assert first.status_code == 201, first
    for spelling, body in spelled_otherwise(fields).items():
        again = await send(worker, connection, body.encode(), message_id=message_id)
        assert again == first, spelling
    other = await send(
        worker, connection, json.dumps({**fields, "name": "Renewals"}).encode(), message_id=message_id
    )
    assert other.status_code == 409 and other.error is not None
    assert other.error.reason == "IDEMPOTENCY_KEY_REUSED"
    assert [o["id"] for o in (await client.list(customer_id)).data["result"]] == [first.data["id"]]
    await events.wait_for(1, customerid=str(customer_id))
    marker = await client.create(customer_id, name="marker", source=SOURCE)
    received = await events.wait_for(2, customerid=str(customer_id))  # later events arrive after
    assert [e["subject"] for e in received] == [first.data["id"], marker.data["id"]]
