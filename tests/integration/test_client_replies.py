"""``OutplanClient`` against a stand-in worker on the real broker: what the caller sees when the
reply is not a ``Reply``, and what ``timeout=0`` means."""

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from contracts.client import UnreadableReply
from tests.conftest import AMQP_URL
from worker.client import OutplanClient, expect

pytestmark = pytest.mark.integration
CTL = shutil.which("outplanctl", path=str(Path(sys.executable).parent)) or "outplanctl"


@dataclass
class StandIn:
    """A command exchange whose queue nobody serves: the test answers each request itself."""

    channel: AbstractChannel
    exchange: str
    requests: AbstractQueue

    async def next_request(self, seconds: float = 5) -> AbstractIncomingMessage:
        async with asyncio.timeout(seconds):
            while (message := await self.requests.get(no_ack=True, fail=False)) is None:
                await asyncio.sleep(0.02)
        return message

    async def answer(self, request: AbstractIncomingMessage, body: bytes) -> None:
        await self.channel.default_exchange.publish(
            aio_pika.Message(body, correlation_id=request.correlation_id), routing_key=request.reply_to or ""
        )


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, aio_pika.abc.AbstractConnection]]:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            f"test-client-{uuid.uuid4().hex[:8]}", aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="#")
        yield StandIn(channel, exchange.name, queue), connection


async def test_a_reply_that_is_not_a_reply_is_raised_to_the_caller_not_a_timeout(
    stand_in: tuple[StandIn, aio_pika.abc.AbstractConnection],
) -> None:
    worker, connection = stand_in
    client = OutplanClient(connection, exchange=worker.exchange, timeout=3)
    await client.start()
    customer = str(uuid.uuid4())
    for body, problem in [
        (b'{"data": {"result": []}}', "status_code is required"),
        (b"<html>502 Bad Gateway</html>", "Invalid JSON"),
    ]:
        pending = asyncio.create_task(client.list(customer))
        await worker.answer(await worker.next_request(), body)
        with pytest.raises(UnreadableReply) as raised:
            await pending
        assert str(raised.value).startswith("the reply to outplan.list is not a Reply: ")
        assert problem in str(raised.value)
        assert raised.value.body == body and raised.value.command == "outplan.list"
    # The client goes on: the next reply that is one is returned.
    pending = asyncio.create_task(client.list(customer))
    await worker.answer(await worker.next_request(), b'{"status_code":200,"data":{"result":[]}}')
    assert expect(await pending) == {"result": []}


async def test_timeout_zero_does_not_wait_the_clients_default(
    stand_in: tuple[StandIn, aio_pika.abc.AbstractConnection],
) -> None:
    worker, connection = stand_in
    client = OutplanClient(connection, exchange=worker.exchange, timeout=30)
    await client.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await client.send("outplan.list", {"customer_id": str(uuid.uuid4())}, timeout=0)
    assert loop.time() - started < 5, "timeout=0 waited for the client's default of 30 s"
    assert (await worker.next_request()).type == "outplan.list"  # it was sent all the same


async def test_outplanctl_reports_a_reply_that_is_not_a_reply_as_a_worker_error(
    stand_in: tuple[StandIn, aio_pika.abc.AbstractConnection],
) -> None:
    worker, _ = stand_in
    env = {
        **os.environ,
        "OUTPLAN_AMQP_URL": AMQP_URL,
        "OUTPLAN_COMMAND_EXCHANGE": worker.exchange,
        "OUTPLAN_CUSTOMER_ID": str(uuid.uuid4()),
    }
    process = await asyncio.create_subprocess_exec(
        CTL, "--timeout", "20", "list", env=env, stdout=PIPE, stderr=PIPE
    )
    try:
        await worker.answer(await worker.next_request(seconds=30), b'{"data": {"result": []}}')
        async with asyncio.timeout(15):  # well before --timeout: the reply itself is the error
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 6, stderr
    assert stderr.decode().splitlines() == [
        "outplanctl: the reply to outplan.list is not a Reply: status_code is required"
    ]
