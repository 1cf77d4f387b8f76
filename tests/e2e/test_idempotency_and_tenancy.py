"""The same message_id twice applies once; one customer never reaches another's outplans."""

import asyncio
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Collector
from tests.support.commands import SOURCE, create_body
from worker.client import OutplanClient

pytestmark = pytest.mark.e2e


async def test_the_same_message_id_twice_is_one_outplan_one_event_one_reply(
    client: OutplanClient, events: Collector, customer_id: uuid.UUID
) -> None:
    message_id = str(uuid.uuid4())
    body = create_body(customer_id, name="once")
    first = await client.send("outplan.create", body, message_id=message_id)
    again = await client.send("outplan.create", body, message_id=message_id)
    assert first.status_code == 201 and again == first
    listed = await client.list(customer_id)
    assert [o["id"] for o in listed.data["result"]] == [first.data["id"]]
    await events.wait_for(1, customerid=str(customer_id))
    marker = await client.create(customer_id, name="marker", source=SOURCE)  # later events arrive after
    received = await events.wait_for(2, customerid=str(customer_id))
    assert [e["subject"] for e in received] == [first.data["id"], marker.data["id"]]


async def test_concurrent_duplicates_apply_once(
    client: OutplanClient, events: Collector, customer_id: uuid.UUID
) -> None:
    message_id = str(uuid.uuid4())
    body = create_body(customer_id, name="racing")
    replies = await asyncio.gather(
        *(client.send("outplan.create", body, message_id=message_id) for _ in range(8))
    )
    assert len({r.model_dump_json() for r in replies}) == 1 and replies[0].status_code == 201
    assert len((await client.list(customer_id)).data["result"]) == 1


async def test_a_reused_message_id_with_another_body_is_refused(
    client: OutplanClient, customer_id: uuid.UUID
) -> None:
    message_id = str(uuid.uuid4())
    await client.send(
        "outplan.create",
        create_body(customer_id, name="a"),
        message_id=message_id,
    )
    reused = await client.send(
        "outplan.create",
        create_body(customer_id, name="b"),
        message_id=message_id,
    )
    assert reused.status_code == 409 and reused.error is not None
    assert reused.error.reason == "IDEMPOTENCY_KEY_REUSED"
    assert [o["name"] for o in (await client.list(customer_id)).data["result"]] == ["a"]


async def test_message_ids_are_scoped_per_customer(client: OutplanClient, customer_id: uuid.UUID) -> None:
    message_id = str(uuid.uuid4())
    other = uuid.uuid4()
    mine = await client.send("outplan.create", create_body(customer_id), message_id=message_id)
    theirs = await client.send("outplan.create", create_body(other), message_id=message_id)
    assert mine.status_code == theirs.status_code == 201 and mine.data["id"] != theirs.data["id"]


async def test_customer_b_cannot_reach_customer_a(client: OutplanClient, events: Collector) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    created = await client.create(a, name="a's", source=SOURCE)
    outplan_id = created.data["id"]
    dial: dict[str, Any] = {
        "source": SOURCE,
        "dial_timeout": 30000,
        "try_interval": 60000,
        **{f"max_try_count_{i}": 1 for i in range(5)},
    }
    attempts = [
        await client.get(b, outplan_id),
        await client.get(b, outplan_id, include_deleted=True),
        await client.update_basic_info(b, outplan_id, name="stolen", detail=""),
        await client.update_dial_info(b, outplan_id, **dial),
        await client.delete(b, outplan_id),
    ]
    missing = await client.get(b, uuid.uuid4())
    assert missing.error is not None
    for reply in attempts:
        assert reply.status_code == 404 and reply.error is not None
        assert reply.error.model_dump() == {
            **missing.error.model_dump(),
            "message": reply.error.message,
        }
        assert reply.error.reason == "OUTPLAN_NOT_FOUND"
    assert (await client.list(b)).data == {"result": [], "next_page_token": ""}
    # a page token made from A's data lists nothing of A's for B
    await client.create(a, name="second", source=SOURCE)
    page = await client.list(a, page_size=1)
    assert page.data["next_page_token"]
    assert (await client.list(b, page_token=page.data["next_page_token"])).data["result"] == []
    assert (await client.get(a, outplan_id)).data == created.data  # untouched
    received = await events.wait_for(2, customerid=str(a))
    await asyncio.sleep(0.3)  # nothing else follows
    assert [e["type"] for e in received] == ["outplan_created", "outplan_created"]
    assert len(events.bodies(customerid=str(a))) == 2
    assert events.bodies(customerid=str(b)) == []
