"""What the broker makes of each event (unrouted, refused, confirmed) concerns that event alone."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import structlog
from structlog.testing import capture_logs

from tests.integration.relay_rig import Rig, Subscriber, rig
from tests.support.commands import create_body, request
from worker.messaging.window import RetryPolicy
from worker.observability import metrics
from worker.persistence.uow import PgUnitOfWork
from worker.service import Service

pytestmark = pytest.mark.integration
__all__ = ["rig"]  # the fixture

FULL = {"x-max-length": 1, "x-overflow": "reject-publish"}  # refuses every publish while it holds one
QUICK = RetryPolicy(
    retries=5, first_delay=0.02, ongoing_after=0.08, quiet_after=0.4, report_every=1.2
)  # 25x faster


def counted(name: str, event_type: str) -> float:
    return metrics.REGISTRY.get_sample_value(f"outplan_events_{name}_total", {"type": event_type}) or 0.0


def all_types(name: str) -> float:
    return sum(counted(name, t) for t in ("outplan_created", "outplan_updated", "outplan_deleted"))


async def history(rig: Rig, customer_id: uuid.UUID, outplans: int, updates: int) -> list[str]:
    """Creates ``outplans`` outplans, then updates each ``updates`` times, then deletes every other,
    one command per outplan per batch (so outplans interleave in the log); the types in number order."""
    service = Service(lambda **kw: PgUnitOfWork(rig.pool, **kw))
    created = await service.change(
        [request("outplan.create", create_body(customer_id)) for _ in range(outplans)]
    )
    ids = [o.reply.decode().split('"id":"', 1)[1].split('"', 1)[0] for o in created]
    types = ["outplan_created"] * outplans
    for n in range(updates):
        await service.change(
            [
                request(
                    "outplan.update_basic_info",
                    {"customer_id": customer_id, "id": i, "name": f"n{n}", "detail": "d"},
                )
                for i in ids
            ]
        )
        types += ["outplan_updated"] * outplans
    await service.change([request("outplan.delete", {"customer_id": customer_id, "id": i}) for i in ids[::2]])
    return types + ["outplan_deleted"] * len(ids[::2])


def loud(logs: list[structlog.typing.EventDict], *levels: str) -> list[structlog.typing.EventDict]:
    return [entry for entry in logs if entry["log_level"] in levels]


def in_outplan_order(subscriber: Subscriber, *, repeats: bool) -> bool:
    """Each outplan's versions arrive in order (re-publishes of one version may repeat it)."""
    for versions in subscriber.versions_by_outplan().values():
        pairs = list(zip(versions, versions[1:], strict=False))
        if not all(a < b or (repeats and a == b) for a, b in pairs):
            return False
    return True


@contextlib.asynccontextmanager
async def drained_slowly(subscriber: Subscriber, every: float) -> AsyncIterator[None]:
    """Take one message off the queue every ``every`` s, keeping it."""

    async def take() -> None:
        while True:
            message = await subscriber.queue.get(no_ack=True, fail=False)
            if message is not None:
                subscriber.messages.append(message)
            await asyncio.sleep(every)

    task = asyncio.create_task(take())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_subscriber_binding_one_type_gets_its_events_once_and_nothing_stalls(
    rig: Rig, customer_id: uuid.UUID
) -> None:
    created_only = await rig.subscribe("outplan_created")
    before = {t: counted("unrouted", t) for t in ("outplan_updated", "outplan_deleted")}
    with capture_logs() as logs:
        relay, task = await rig.relay()
        first = await history(rig, customer_id, outplans=6, updates=2)  # nobody binds updates and deletes
        await rig.settled()
        everyone = await rig.subscribe("#")
        second = await history(rig, customer_id, outplans=6, updates=2)
        await rig.settled()
        await everyone.wait_for(len(second))
        await asyncio.sleep(0.3)  # a repeat would arrive by now
        relay.stop()
        await task
    types = first + second
    assert everyone.copies() == {n: 1 for n in range(len(first) + 1, len(types) + 1)}
    assert created_only.copies() == {n: 1 for n, t in enumerate(types, start=1) if t == "outplan_created"}
    assert {t: counted("unrouted", t) - before[t] for t in before} == {
        "outplan_updated": first.count("outplan_updated"),
        "outplan_deleted": first.count("outplan_deleted"),
    }
    assert loud(logs, "error", "warning", "critical") == []


async def test_a_full_subscriber_is_retried_alone_and_the_healthy_one_gets_everything(
    rig: Rig, customer_id: uuid.UUID
) -> None:
    healthy = await rig.subscribe("#")
    full = await rig.subscribe("#", consume=False, arguments=FULL)
    relay, task = await rig.relay(QUICK)
    async with drained_slowly(full, every=0.1):
        types = await history(rig, customer_id, outplans=12, updates=2)
        await rig.settled()
        await asyncio.sleep(0.3)
    relay.stop()
    await task
    copies = healthy.copies()
    assert sorted(copies) == list(range(1, len(types) + 1))  # nothing missing, nothing stalled
    assert max(copies.values()) <= 1 + QUICK.retries
    # Every extra copy is a re-publish of an event the broker refused: confirmed ones never went again.
    assert sum(c - 1 for c in copies.values()) == relay.tally.refused - relay.tally.given_up > 0
    assert all(c == 1 for c in full.copies().values())
    assert in_outplan_order(healthy, repeats=True) and in_outplan_order(full, repeats=False)


async def test_a_refusal_past_the_bound_is_given_up_once_logged_and_the_checkpoint_moves_on(
    rig: Rig, customer_id: uuid.UUID
) -> None:
    healthy = await rig.subscribe("#")
    full = await rig.subscribe("#", consume=False, arguments=FULL)  # never drained
    before = {name: all_types(name) for name in ("refused", "given_up")}
    with capture_logs() as logs:
        relay, task = await rig.relay(QUICK)
        types = await history(rig, customer_id, outplans=3, updates=1)
        await rig.settled()
        await asyncio.sleep(0.3)
        relay.stop()
        await task
    assert len(types) == 8  # 3 creates, 3 updates, 2 deletes
    taken = await _peek(full)  # the one event the full queue took: it was empty at first
    copies = healthy.copies()
    given_up = sorted(n for n in copies if n != taken)
    assert sorted(copies) == list(range(1, 9)) and copies[taken] == 1
    assert all(1 <= copies[n] <= 1 + QUICK.retries for n in given_up)  # within the bound
    errors = loud(logs, "error")
    first, *summaries = errors
    # Refused for longer than ongoing_after: refusals are ongoing, said once, with the event that showed it.
    assert (
        first["event"]
        == "events refused by the broker; refusals are ongoing: refused events are left to replay"
    )
    assert first["outplan_id"] and first["event_id"] and first["type"] and first["eventsequence"] in given_up
    # Every event given up is summed up, with the range to replay to the refusing subscriber.
    assert [e["event"] for e in summaries] == ["events refused by the broker and left to replay"]
    assert (summaries[0]["events"], summaries[0]["from_seq"], summaries[0]["to_seq"]) == (
        len(given_up),
        min(given_up),
        max(given_up),
    )
    assert summaries[0]["replay"] == (
        f"outplan-worker replay --from-seq {min(given_up)} --to-seq {max(given_up)} "
        "--queue <the refusing subscriber's queue>"
    )
    assert len(loud(logs, "warning")) == 1  # one line for the burst, not one per event or retry
    assert relay.tally.given_up == len(given_up)
    assert relay.tally.refused == sum(copies[n] for n in given_up)
    assert {name: all_types(name) - before[name] for name in before} == {
        "refused": relay.tally.refused,
        "given_up": relay.tally.given_up,
    }
    assert await rig.checkpoint() == 8
    assert in_outplan_order(healthy, repeats=True)


async def test_refusals_that_go_on_hold_no_outplan_back_and_end_when_the_broker_accepts_again(
    rig: Rig, customer_id: uuid.UUID
) -> None:
    healthy = await rig.subscribe("#")
    full = await rig.subscribe("#", consume=False, arguments=FULL)
    with capture_logs() as logs:
        relay, task = await rig.relay(QUICK)
        first = await history(rig, customer_id, outplans=2, updates=1)  # the first refusal gets given up
        await rig.settled()
        started = asyncio.get_running_loop().time()
        more = await history(rig, customer_id, outplans=4, updates=2)  # refused while ongoing
        await rig.settled()
        ongoing_took = asyncio.get_running_loop().time() - started
        await full.queue.purge()
        await asyncio.sleep(QUICK.quiet_after + 0.3)  # nothing refused: the refusals end
        await history(rig, customer_id, outplans=1, updates=0)
        await rig.settled()
        relay.stop()
        await task
    assert ongoing_took < QUICK.first_delay * 2**QUICK.retries, "no event was held for its retries"
    copies = healthy.copies()
    during = range(len(first) + 1, len(first) + len(more) + 1)
    assert {n: copies[n] for n in during if copies[n] != 1} == {}  # refused once, left to replay at once
    events = [e["event"] for e in loud(logs, "error", "warning", "info")]
    assert "no event refused for a while; refused events are retried again" in events
    after = len(first) + len(more) + 1
    assert await _peek(full) == after  # the emptied queue took the next event (then was full again)
    assert all(copies[n] > 1 for n in range(after + 1, max(copies) + 1))  # and refusals were retried again


async def _peek(subscriber: Subscriber) -> int:
    message = await subscriber.queue.get(no_ack=True)
    subscriber.messages.append(message)
    return subscriber.sequences()[-1]


async def test_a_standby_drains_at_once_and_says_why(rig: Rig) -> None:
    (a, task_a), (b, task_b) = await rig.relay(), await rig.relay()
    leader = await rig.leading(a, b)
    standby = b if leader is a else a
    standby.stop()
    await (task_b if standby is b else task_a)
    with capture_logs() as logs:
        started = asyncio.get_running_loop().time()
        assert await standby.drain(5.0)
        took = asyncio.get_running_loop().time() - started
    assert took < 1.0
    assert [e["event"] for e in logs] == ["another process's relay holds the lock; it publishes the outbox"]
    leader.stop()
    await asyncio.gather(task_a, task_b)
