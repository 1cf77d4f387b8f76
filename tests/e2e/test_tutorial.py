"""The tutorial flow through a running worker: replies and exactly the expected events."""

import asyncio
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Collector
from tests.support.commands import SOURCE
from tests.support.events import STORED_SOURCE
from worker.client import OutplanClient

pytestmark = pytest.mark.e2e

CREATE: dict[str, Any] = {
    "name": "test outplan",
    "detail": "outplan for test use.",
    "source": SOURCE,
    "dial_timeout": 30000,
    "try_interval": 600000,
    **{f"max_try_count_{i}": 5 for i in range(5)},
}
DIAL_INFO: dict[str, Any] = {
    "source": {"type": "sip", "target": "dialer@PBX.example.com"},
    "dial_timeout": 45000,
    "try_interval": 60000,
    **{f"max_try_count_{i}": i for i in range(5)},
}


async def test_the_tutorial_flow(client: OutplanClient, events: Collector, customer_id: uuid.UUID) -> None:
    created = await client.create(customer_id, **CREATE)
    assert created.status_code == 201, created
    outplan = created.data
    assert outplan["customer_id"] == str(customer_id)
    assert {k: outplan[k] for k in ("name", "detail", "dial_timeout", "try_interval")} == {
        k: CREATE[k] for k in ("name", "detail", "dial_timeout", "try_interval")
    }
    assert outplan["source"] == STORED_SOURCE
    assert outplan["tm_update"] == outplan["tm_create"]
    assert outplan["tm_delete"] == "9999-01-01 00:00:00.000000"
    outplan_id = outplan["id"]

    got = await client.get(customer_id, outplan_id)
    assert (got.status_code, got.data) == (200, outplan)

    listed = await client.list(customer_id)
    assert listed.status_code == 200
    assert listed.data == {"result": [outplan], "next_page_token": ""}

    basic = await client.update_basic_info(
        customer_id, outplan_id, name="renamed", detail="outplan for test use"
    )
    assert basic.status_code == 200
    assert (basic.data["name"], basic.data["detail"]) == ("renamed", "outplan for test use")
    assert basic.data["tm_update"] > outplan["tm_update"] and basic.data["tm_create"] == outplan["tm_create"]

    dial = await client.update_dial_info(customer_id, outplan_id, **DIAL_INFO)
    assert dial.status_code == 200
    assert dial.data["source"]["target"] == "dialer@pbx.example.com" and dial.data["dial_timeout"] == 45000
    assert [dial.data[f"max_try_count_{i}"] for i in range(5)] == [0, 1, 2, 3, 4]
    assert dial.data["name"] == "renamed"

    deleted = await client.delete(customer_id, outplan_id)
    assert deleted.status_code == 200
    assert deleted.data["tm_delete"] != "9999-01-01 00:00:00.000000"

    gone = await client.get(customer_id, outplan_id)
    assert gone.status_code == 404 and gone.error is not None and gone.error.reason == "OUTPLAN_NOT_FOUND"
    kept = await client.get(customer_id, outplan_id, include_deleted=True)
    assert (kept.status_code, kept.data) == (200, deleted.data)
    assert (await client.list(customer_id)).data == {"result": [], "next_page_token": ""}

    received = await events.wait_for(4, customerid=str(customer_id))
    await asyncio.sleep(0.5)  # and nothing more arrives
    assert len(events.bodies(customerid=str(customer_id))) == 4
    assert [e["type"] for e in received] == [
        "outplan_created",
        "outplan_updated",
        "outplan_updated",
        "outplan_deleted",
    ]
    assert [e["data"] for e in received] == [outplan, basic.data, dial.data, deleted.data]
    assert [e["outplanversion"] for e in received] == [1, 2, 3, 4]
    sequences = [e["eventsequence"] for e in received]
    assert sequences == sorted(sequences) and len(set(sequences)) == 4
    for event in received:
        assert event["specversion"] == "1.0" and event["subject"] == outplan_id
        assert event["source"] == "outplan-worker" and event["datacontenttype"] == "application/json"
        uuid.UUID(event["id"])
    messages = [m for m in events.messages if m.message_id in {e["id"] for e in received}]
    assert [m.routing_key for m in messages] == [e["type"] for e in received]
    assert all(m.content_type == "application/cloudevents+json" for m in messages)


async def test_no_event_for_a_refused_mutation(
    client: OutplanClient, events: Collector, customer_id: uuid.UUID
) -> None:
    missing = await client.update_basic_info(customer_id, uuid.uuid4(), name="x", detail="y")
    assert missing.status_code == 404
    marker = await client.create(customer_id, **CREATE)  # events are in order: this one comes after
    received = await events.wait_for(1, customerid=str(customer_id))
    assert [e["subject"] for e in received] == [marker.data["id"]]
