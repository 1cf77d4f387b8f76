"""Caller IDs through a running worker: what people type is stored as what a carrier dials, what
no carrier can dial is refused naming ``source.target``, names refuse control characters, and
outplans stored under the earlier rules are still served and published as stored.

The rows are tests/support/caller_ids.py's, which the unit tests prove against the contract too."""

import uuid
from typing import Any

import asyncpg
import pytest

from contracts import Projection, parse_event
from contracts.projection import Applied
from tests.e2e.conftest import Collector
from tests.support.caller_ids import ACCEPTED, REFUSED, row_ids
from tests.support.commands import SOURCE
from worker.client import OutplanClient

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("kind", "given", "stored"), ACCEPTED, ids=row_ids(ACCEPTED))
async def test_caller_ids_are_stored_as_dialled(
    client: OutplanClient,
    events: Collector,
    customer_id: uuid.UUID,
    kind: str,
    given: str,
    stored: str,
) -> None:
    created = await client.create(customer_id, source={"type": kind, "target": given})
    assert created.status_code == 201, created
    assert created.data["source"]["target"] == stored
    got = await client.get(customer_id, created.data["id"])
    assert got.data["source"]["target"] == stored
    [event] = await events.wait_for(1, subject=created.data["id"])
    assert event["data"]["source"]["target"] == stored


@pytest.mark.parametrize(("kind", "given", "message"), REFUSED, ids=row_ids(REFUSED))
async def test_caller_ids_no_carrier_can_dial_are_refused(
    client: OutplanClient,
    customer_id: uuid.UUID,
    kind: str,
    given: str,
    message: str,
) -> None:
    reply = await client.create(customer_id, source={"type": kind, "target": given})
    assert reply.status_code == 400 and reply.error is not None, reply
    assert reply.error.reason == "VALIDATION_FAILED"
    assert [(d.field, d.message) for d in reply.error.details] == [
        ("source.target", f"source.target {message}")
    ]
    assert (await client.list(customer_id)).data == {"result": [], "next_page_token": ""}


async def test_update_dial_info_applies_the_same_rules(client: OutplanClient, customer_id: uuid.UUID) -> None:
    outplan = (await client.create(customer_id, source=SOURCE)).data
    dial: dict[str, Any] = {
        "dial_timeout": 30000,
        "try_interval": 60000,
        **{f"max_try_count_{i}": 1 for i in range(5)},
    }
    ok = await client.update_dial_info(
        customer_id, outplan["id"], source={"type": "tel", "target": "+33 06 12 34 56 78"}, **dial
    )
    assert (ok.status_code, ok.data["source"]["target"]) == (200, "+33612345678")
    bad = await client.update_dial_info(
        customer_id, outplan["id"], source={"type": "sip", "target": "a@b..c"}, **dial
    )
    assert bad.status_code == 400 and bad.error is not None
    assert [d.field for d in bad.error.details] == ["source.target"]


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("name", {"name": "Sales\nTeam"}),
        ("source.name", {"source": {**SOURCE, "name": "Sales\u202emaeT"}}),
        (
            "source.target_name",
            {"source": {**SOURCE, "target_name": "a\x1b[31mb"}},
        ),
    ],
)
async def test_names_with_control_characters_are_refused(
    client: OutplanClient,
    customer_id: uuid.UUID,
    field: str,
    body: dict[str, Any],
) -> None:
    reply = await client.create(customer_id, **{"source": SOURCE, **body})
    assert reply.status_code == 400 and reply.error is not None
    assert [d.field for d in reply.error.details] == [field]
    assert "must not contain control or bidirectional-formatting characters" in reply.error.message


async def test_detail_keeps_line_breaks(client: OutplanClient, customer_id: uuid.UUID) -> None:
    detail = "line 1\nline 2\ttabbed"
    reply = await client.create(customer_id, detail=detail, source={**SOURCE, "detail": detail})
    assert (
        reply.status_code == 201
        and reply.data["detail"] == detail
        and reply.data["source"]["detail"] == detail
    )


async def test_an_outplan_stored_under_the_old_rules_is_served_and_published_as_stored(
    client: OutplanClient,
    events: Collector,
    customer_id: uuid.UUID,
    session_database: str,
) -> None:
    outplan = (await client.create(customer_id, source={"type": "tel", "target": "+442079460958"})).data
    conn = await asyncpg.connect(session_database)
    try:  # what the earlier rules stored for "+44 (0) 20 7946 0958"
        await conn.execute(
            "UPDATE outplans SET source_target = '+4402079460958', source_name = 'old\nname' WHERE id = $1",
            uuid.UUID(outplan["id"]),
        )
    finally:
        await conn.close()
    got = await client.get(customer_id, outplan["id"])
    assert got.data["source"]["target"] == "+4402079460958"
    renamed = await client.update_basic_info(customer_id, outplan["id"], name="renamed", detail="")
    assert renamed.status_code == 200, renamed
    assert renamed.data["source"] == {**outplan["source"], "target": "+4402079460958", "name": "old\nname"}
    await events.wait_for(2, subject=outplan["id"])
    projection = Projection()
    for message in events.messages:
        event = parse_event(message.body)
        if str(event.subject) == outplan["id"]:
            assert projection.apply(event) is Applied.APPLIED
    assert projection.outplans[uuid.UUID(outplan["id"])].source.target == "+4402079460958"
