"""Each kind of invalid input: a 400 reply, a dead-lettered copy with its reason, and the worker
carries on."""

import asyncio
import uuid

import pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from contracts import Reply
from tests.conftest import AMQP_URL
from tests.e2e.conftest import Collector, WorkerProcess
from tests.support.commands import create_json
from tests.support.sending import send_raw
from worker.client import OutplanClient
from worker.messaging.outgoing import DEAD_LETTER_BODY_MAX

pytestmark = pytest.mark.e2e


CASES = {
    "not json": (b"{oops", {}, "MALFORMED_JSON"),
    "invalid utf-8": (b'{"name": "\xff"}', {}, "MALFORMED_JSON"),
    "not an object": (b"[1, 2, 3]", {}, "NOT_AN_OBJECT"),
    "failed validation": (None, {}, "VALIDATION_FAILED"),
    "too large": (b'{"detail": "' + b"x" * 70_000 + b'"}', {}, "BODY_TOO_LARGE"),
    "wrong content type": (None, {"content_type": "application/xml"}, "UNSUPPORTED_CONTENT_TYPE"),
}


@pytest.mark.parametrize("case", CASES)
async def test_invalid_input_is_answered_and_dead_lettered(
    case: str,
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    client: OutplanClient,
    dead_letters: Collector,
    customer_id: uuid.UUID,
) -> None:
    body, props, reason = CASES[case]
    body = body or create_json(customer_id, dial_timeout=30, bogus=True)
    props = {"content_type": "application/json", **props}
    message_id, reply = await send_raw(
        connection, exchange=worker.names.command_exchange, routing_key="outplan.create", body=body, **props
    )
    assert reply.status_code == 400 and reply.error is not None
    assert (reply.error.status, reply.error.reason) == ("INVALID_ARGUMENT", reason)
    if reason == "VALIDATION_FAILED":
        assert [d.field for d in reply.error.details] == ["dial_timeout", "bogus"]
        assert "for 30 seconds send 30000" in reply.error.message
    dead = await dead_letters.wait_for_message(message_id)
    if len(body) > DEAD_LETTER_BODY_MAX:  # a bounded prefix, and the size it came with
        assert (dead.body, dead.headers["x-original-body-size"]) == (body[:DEAD_LETTER_BODY_MAX], len(body))
    else:
        assert dead.body == body and "x-original-body-size" not in dead.headers
    assert dead.headers["x-error-reason"] == reason and dead.headers["x-error-status"] == "INVALID_ARGUMENT"
    assert dead.headers["x-error-message"] == reply.error.message
    assert (await client.list(customer_id)).data == {"result": [], "next_page_token": ""}  # nothing written


async def test_an_unknown_command_sent_to_the_queue(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    dead_letters: Collector,
    client: OutplanClient,
) -> None:
    message_id, reply = await send_raw(
        connection,
        exchange="",
        routing_key=worker.names.command_queue,
        body=b"{}",
        type="outplan.rename",
        content_type="application/json",
    )
    assert reply.status_code == 400 and reply.error is not None and reply.error.reason == "UNKNOWN_COMMAND"
    assert "outplan.rename" in reply.error.message
    dead = await dead_letters.wait_for_message(message_id)
    assert dead.headers["x-error-reason"] == "UNKNOWN_COMMAND"
    assert (await client.list(uuid.uuid4())).status_code == 200  # still serving


async def test_a_command_sent_to_the_queue_with_its_type_is_served(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    customer_id: uuid.UUID,
) -> None:
    _, reply = await send_raw(
        connection,
        exchange="",
        routing_key=worker.names.command_queue,
        body=create_json(customer_id),
        type="outplan.create",
        content_type="application/json",
    )
    assert reply.status_code == 201


async def test_a_mutation_without_message_id_is_refused(
    worker: WorkerProcess,
    connection: AbstractRobustConnection,
    dead_letters: Collector,
    client: OutplanClient,
    customer_id: uuid.UUID,
) -> None:
    # aio-pika fills in a random message_id when there is none, so a plain AMQP client sends this one.
    channel = await connection.channel()
    reply_queue = await channel.declare_queue(exclusive=True)
    correlation_id = str(uuid.uuid4())
    body = create_json(customer_id)

    def publish() -> None:
        blocking = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        try:
            blocking.channel().basic_publish(
                worker.names.command_exchange,
                "outplan.create",
                body,
                pika.BasicProperties(
                    content_type="application/json", reply_to=reply_queue.name, correlation_id=correlation_id
                ),
            )
        finally:
            blocking.close()

    await asyncio.to_thread(publish)
    async with asyncio.timeout(10):
        message = await reply_queue.get(no_ack=True, fail=False, timeout=5)
        while message is None:
            await asyncio.sleep(0.05)
            message = await reply_queue.get(no_ack=True, fail=False, timeout=5)
    assert message.correlation_id == correlation_id
    reply = Reply.model_validate_json(message.body)
    assert (
        reply.status_code == 400 and reply.error is not None and reply.error.reason == "MESSAGE_ID_REQUIRED"
    )
    async with asyncio.timeout(10):
        while not any(m.correlation_id == correlation_id for m in dead_letters.messages):
            await asyncio.sleep(0.02)
    dead = next(m for m in dead_letters.messages if m.correlation_id == correlation_id)
    assert dead.headers["x-error-reason"] == "MESSAGE_ID_REQUIRED"
    assert (await client.list(customer_id)).data == {"result": [], "next_page_token": ""}
