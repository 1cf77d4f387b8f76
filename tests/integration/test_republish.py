"""The engine behind ``replay``: what counts as a failure depends on where the events go."""

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from tests.conftest import AMQP_URL
from worker.messaging.event_publishing import Progress, Republisher, Target
from worker.persistence.outbox import LoggedEvent

pytestmark = pytest.mark.integration


def events(*types: str) -> list[LoggedEvent]:
    return [
        LoggedEvent(n, str(uuid.uuid4()), t, None, b"{}", str(uuid.uuid4()))
        for n, t in enumerate(types, start=1)
    ]


async def one_batch(batch: list[LoggedEvent]) -> AsyncIterator[list[LoggedEvent]]:
    yield batch


async def republish(target: Target, batch: list[LoggedEvent]) -> Progress:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
        progress = Progress()
        await Republisher(channel, target, run_id="test").run(one_batch(batch), progress)
        return progress


async def test_events_no_binding_wants_are_counted_not_failed() -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            f"test.events.{uuid.uuid4().hex[:8]}", aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="outplan_created")
        progress = await republish(
            Target(exchange=exchange.name), events("outplan_created", "outplan_deleted", "outplan_created")
        )
        assert (progress.confirmed, progress.unrouted, progress.failed, progress.error) == (2, 1, 0, None)
        assert progress.last_confirmed_seq == 3
        got = [await queue.get(no_ack=True, fail=False, timeout=5) for _ in range(3)]
        assert [m.type if m else None for m in got] == ["outplan_created", "outplan_created", None]


async def test_a_queue_that_does_not_exist_is_a_failure() -> None:
    missing = f"test-replay-missing-{uuid.uuid4().hex[:8]}"
    progress = await republish(Target(queue=missing), events("outplan_created", "outplan_updated"))
    assert progress.confirmed == 0 and progress.failed == 2
    assert progress.error is not None and "NO_ROUTE" in progress.error and missing in progress.error
