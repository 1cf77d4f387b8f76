"""A handler that keeps failing: retried up to the limit, then answered 500 and dead-lettered."""

import asyncio
from collections.abc import Callable

import aio_pika
import pytest

from tests.conftest import AMQP_URL
from tests.faults.conftest import COMMANDS, RATE, ready, report
from tests.faults.traffic import Traffic
from tests.support.commands import SOURCE
from tests.support.faulty_worker import FAULT_MESSAGE, MARKER, InjectedFault
from tests.support.workers import WorkerProcess, faulty_worker_command

pytestmark = [pytest.mark.faults, pytest.mark.timeout(400)]


async def test_a_poison_message_is_retried_then_dead_lettered_while_others_flow(
    workers: Callable[..., WorkerProcess], traffic: Traffic, fresh_database: str
) -> None:
    worker = workers(launcher=faulty_worker_command, retry_limit="4")
    await ready(worker)
    await traffic.open()
    poison: list[str] = []

    async def on_progress(sent: int) -> None:
        if sent == COMMANDS // 4:
            body = {"customer_id": traffic.customers[0], "name": MARKER, "source": SOURCE}
            poison.append((await traffic.send("outplan.create", body)).message_id)
            traffic.ledger.faults += 1

    await traffic.run(COMMANDS // 2, RATE, on_progress)
    await traffic.settle()
    figures = await traffic.ledger.audit(fresh_database, traffic.customers)
    report("poison message", figures, [worker])

    reply = traffic.ledger.replies[poison[0]]
    assert reply.status_code == 500 and reply.error is not None
    assert (reply.error.status, reply.error.reason) == ("INTERNAL", "INTERNAL_ERROR")
    # internals stay in the dead letter, not the reply
    assert InjectedFault.__name__ not in reply.error.message and FAULT_MESSAGE not in reply.error.message

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(worker.names.dead_letter_queue, ensure=False)
        dead = None
        async with asyncio.timeout(10):
            while dead is None:
                message = await queue.get(no_ack=True, fail=False)
                if message is not None and message.message_id == poison[0]:
                    dead = message
                elif message is None:
                    await asyncio.sleep(0.1)
    assert dead.headers["x-error-reason"] == "INTERNAL_ERROR"
    assert dead.headers["x-exception-class"] == InjectedFault.__name__  # the test's stand-in for a bug
    assert dead.headers["x-exception-message"] == FAULT_MESSAGE
    assert dead.headers["x-deliveries"] == 4  # retried up to the limit, counted by the queue
    assert worker.log().count('"handler failed; redelivering"') == 3
    assert await asyncio.to_thread(worker.stop) == 0
