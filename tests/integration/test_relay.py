"""The outbox relay against real PostgreSQL and RabbitMQ: order, no skips, same ids on re-publish."""

import asyncio
import json
import uuid

import aio_pika
import asyncpg
import pytest
from structlog.testing import capture_logs

from contracts import parse_event
from tests.integration.relay_rig import Rig, rig
from tests.support.amqp_cutter import BASIC_PUBLISH, AmqpCutter
from tests.support.commands import create_body, request
from tests.support.outplans import create_committed, creating
from worker.messaging.relay import Relay
from worker.persistence.outbox import BACKLOG
from worker.persistence.uow import PgUnitOfWork
from worker.service import Service

pytestmark = pytest.mark.integration
__all__ = ["rig"]  # the fixture


async def published(pool: asyncpg.Pool, event_id: uuid.UUID) -> bool:
    """Confirmed by the broker: sequenced at or below the relay's checkpoint."""
    return bool(
        await pool.fetchval(
            "SELECT e.eventsequence <= s.published_through FROM outplan_events e, outbox_state s"
            " WHERE e.event_id = $1",
            event_id,
        )
    )


async def test_a_transaction_that_commits_late_holds_later_writers_back(
    rig: Rig, customer_id: uuid.UUID
) -> None:
    """Numbers follow commit order: a later writer waits for the earlier one's commit, so the
    relay can never publish a higher number while a lower one is still uncommitted."""
    await rig.bind_queue()
    relay, task = await rig.relay()
    async with creating(rig.pool, customer_id) as (first, first_event):  # holds the counter until it commits
        later = asyncio.create_task(create_committed(rig.pool, customer_id))
        await asyncio.sleep(0.5)
        assert not later.done() and rig.received == []
        await first.commit()
    second_event = await asyncio.wait_for(later, 5)
    await rig.wait_for(2)
    relay.stop()
    await task

    events = [parse_event(m.body) for m in rig.received]
    assert [str(e.id) for e in events] == [str(first_event), str(second_event)]
    assert [e.eventsequence for e in events] == [1, 2]  # strictly increasing in publish order
    assert [m.message_id for m in rig.received] == [str(first_event), str(second_event)]
    assert await rig.pool.fetchval("SELECT n FROM (" + BACKLOG + ") AS b") == 0


async def test_a_rolled_back_write_leaves_no_gap_in_the_numbers(rig: Rig, customer_id: uuid.UUID) -> None:
    await rig.bind_queue()
    async with creating(rig.pool, customer_id):  # left without commit: rolled back
        later = asyncio.create_task(create_committed(rig.pool, customer_id))
        await asyncio.sleep(0.2)
    kept_event = await asyncio.wait_for(later, 5)
    relay, task = await rig.relay()
    await rig.wait_for(1)
    relay.stop()
    await task
    [event] = [parse_event(m.body) for m in rig.received]
    assert str(event.id) == str(kept_event) and event.eventsequence == 1


async def test_an_event_nobody_binds_is_settled_and_the_next_ones_follow(
    rig: Rig, customer_id: uuid.UUID
) -> None:
    """Unrouted is an outcome, not a failure: the checkpoint moves past it and a queue bound later
    receives only what comes after (the event log still has the rest, for replay)."""
    event_id = await create_committed(rig.pool, customer_id)
    relay, task = await rig.relay()
    await rig.settled(seconds=5)
    assert await published(rig.pool, event_id)
    await rig.bind_queue()
    later_id = await create_committed(rig.pool, customer_id)
    await rig.wait_for(1)
    relay.stop()
    await task
    [message] = rig.received
    assert message.message_id == str(later_id) and message.type == "outplan_created"
    assert message.content_type == "application/cloudevents+json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert relay.tally.unrouted == 1 and relay.tally.confirmed == 1


async def test_an_unconfirmed_event_is_published_again_byte_for_byte(
    rig: Rig, customer_id: uuid.UUID
) -> None:
    await rig.bind_queue()
    event_id = await create_committed(rig.pool, customer_id)
    relay, task = await rig.relay()
    await rig.wait_for(1)
    relay.stop()
    await task
    # as if the relay had died after publishing but before recording the confirm
    await rig.pool.execute("UPDATE outbox_state SET published_through = 0")
    relay, task = await rig.relay()
    await rig.wait_for(2)
    relay.stop()
    await task
    first, again = rig.received
    assert again.body == first.body and again.message_id == first.message_id == str(event_id)
    assert json.loads(again.body)["eventsequence"] == 1


async def test_only_one_relay_publishes_at_a_time(rig: Rig, customer_id: uuid.UUID) -> None:
    await rig.bind_queue()
    (a, task_a), (b, task_b) = await rig.relay(), await rig.relay()
    for _ in range(5):
        await create_committed(rig.pool, customer_id)
    await rig.wait_for(5)
    assert sorted([a.is_leader, b.is_leader]) == [False, True]
    leader, standby = (a, b) if a.is_leader else (b, a)
    assert (leader.published, standby.published) == (5, 0)
    leader.stop()
    await create_committed(rig.pool, customer_id)
    await rig.wait_for(6)  # the standby takes over once the leader's lock is gone
    assert standby.is_leader and standby.published == 1
    standby.stop()
    await asyncio.gather(task_a, task_b)
    assert [parse_event(m.body).eventsequence for m in rig.received] == [1, 2, 3, 4, 5, 6]


async def creates(service: Service, customer_id: uuid.UUID, n: int) -> None:
    for _ in range(n):
        [outcome] = await service.change([request("outplan.create", create_body(customer_id))])
        assert outcome.status_code == 201


def handing_to(rig: Rig, relay: Relay | None) -> Service:
    """The service path a worker process runs, handing its commits to ``relay`` (or to none)."""
    on_commit = relay.hand_over if relay is not None else None
    return Service(lambda **kw: PgUnitOfWork(rig.pool, on_commit=on_commit, **kw))


async def test_handed_over_and_read_events_go_out_in_one_order(rig: Rig, customer_id: uuid.UUID) -> None:
    """Half the writers hand their events to the relay, half are "another process" it must read:
    whatever the interleaving, events go out in number order, each once, as stored."""
    await rig.bind_queue()
    relay, task = await rig.relay()
    await rig.leading(relay)
    here, elsewhere = handing_to(rig, relay), handing_to(rig, None)
    await asyncio.gather(*(creates(here if i % 2 else elsewhere, customer_id, 15) for i in range(6)))
    await rig.wait_for(90)
    relay.stop()
    await task

    sequences = [parse_event(m.body).eventsequence for m in rig.received]
    assert sequences == list(range(1, 91))
    stored = {
        r["eventsequence"]: bytes(r["body"])
        for r in await rig.pool.fetch("SELECT eventsequence, body FROM outplan_events")
    }
    assert [m.body for m in rig.received] == [stored[n] for n in sequences]
    assert await rig.pool.fetchval("SELECT n FROM (" + BACKLOG + ") AS b") == 0


async def test_hand_over_follows_the_leadership(rig: Rig, customer_id: uuid.UUID) -> None:
    """A process whose relay stands by has its events published by the leader; once its own relay
    leads, what it hands over goes out after what the old leader published, each event once."""
    await rig.bind_queue()
    (a, task_a), (b, task_b) = await rig.relay(), await rig.relay()
    leader = await rig.leading(a, b)
    standby = b if leader is a else a
    writer = handing_to(rig, standby)
    await creates(writer, customer_id, 3)
    await rig.wait_for(3)
    assert (leader.published, standby.published) == (3, 0)
    leader.stop()
    await rig.leading(standby)
    await creates(writer, customer_id, 3)
    await rig.wait_for(6)
    standby.stop()
    await asyncio.gather(task_a, task_b)
    assert [parse_event(m.body).eventsequence for m in rig.received] == [1, 2, 3, 4, 5, 6]
    assert standby.published == 3


async def test_a_stopping_relay_gives_the_broker_its_settle_time_and_no_more(
    rig: Rig, customer_id: uuid.UUID
) -> None:
    """Publishes the broker never answers (here: never reach it) hold a stop for ``settle_within``
    s, then stay above the checkpoint; a relay on a healthy link then publishes them."""
    await rig.bind_queue()
    async with AmqpCutter(BASIC_PUBLISH, swallow=True) as silent:
        connection = await aio_pika.connect(silent.url)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
            relay = Relay(rig.settings, channel)
            task = asyncio.create_task(relay.run())
            await create_committed(rig.pool, customer_id)
            async with asyncio.timeout(10):
                while not silent.cuts:
                    await asyncio.sleep(0.02)
            with capture_logs() as logs:
                started = asyncio.get_running_loop().time()
                relay.stop(settle_within=0.5)
                await asyncio.wait_for(task, 10)
                waited = asyncio.get_running_loop().time() - started
        finally:
            await connection.close()
    assert 0.5 <= waited < 2.0, waited
    assert [(e["event"], e["unanswered"]) for e in logs if e["log_level"] == "warning"] == [
        ("stopping with publishes the broker has not answered; the next publisher sends them again", 1)
    ]
    assert await rig.checkpoint() == 0 and rig.received == []
    relay, task = await rig.relay()
    await rig.wait_for(1)
    relay.stop()
    await task
    assert await rig.checkpoint() == 1
