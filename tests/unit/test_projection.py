"""The subscriber kit: parse_event and the projection helper."""

import json
import uuid

import pytest
from pydantic import ValidationError

from contracts import Applied, Gap, OutplanDeleted, OutplanUpdated, Projection, parse_event
from tests.support.events import event_body

pytestmark = pytest.mark.unit
OUTPLAN = str(uuid.uuid4())


def body(kind: str, version: int, *, name: str = "n", event_id: str | None = None) -> bytes:
    """An event of the one outplan these tests follow."""
    return event_body(kind, version, outplan_id=OUTPLAN, name=name, event_id=event_id)


def test_parse_event_gives_the_typed_event() -> None:
    event = parse_event(body("outplan_updated", 2, name="x"))
    assert isinstance(event, OutplanUpdated) and event.data.name == "x" and event.outplanversion == 2
    assert isinstance(parse_event(body("outplan_deleted", 3)), OutplanDeleted)


@pytest.mark.parametrize(
    "broken",
    [
        b"not json",
        body("outplan_renamed", 1),
        body("outplan_created", 0),
        json.dumps({**json.loads(body("outplan_created", 1)), "specversion": "0.3"}).encode(),
        json.dumps({k: v for k, v in json.loads(body("outplan_created", 1)).items() if k != "data"}).encode(),
    ],
)
def test_parse_event_refuses_anything_else_clearly(broken: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_event(broken)


def test_the_projection_applies_ignores_duplicates_and_stale_versions() -> None:
    projection = Projection()
    first = body("outplan_created", 1, event_id=str(uuid.uuid4()))
    assert projection.apply(parse_event(first)) == Applied.APPLIED
    assert projection.apply(parse_event(first)) == Applied.DUPLICATE
    assert projection.apply(parse_event(body("outplan_updated", 2, name="two"))) == Applied.APPLIED
    assert projection.apply(parse_event(body("outplan_updated", 2, name="other copy"))) == Applied.STALE
    assert projection.apply(parse_event(body("outplan_updated", 1, name="old"))) == Applied.STALE
    assert projection.outplans[uuid.UUID(OUTPLAN)].name == "two"
    assert projection.gaps == []


def test_the_projection_reports_gaps_and_drops_deleted_outplans() -> None:
    projection = Projection()
    projection.apply(parse_event(body("outplan_created", 1)))
    assert projection.apply(parse_event(body("outplan_updated", 4, name="four"))) == Applied.AFTER_GAP
    assert projection.gaps == [Gap(uuid.UUID(OUTPLAN), 2, 3)]
    assert projection.apply(parse_event(body("outplan_deleted", 5))) == Applied.APPLIED
    assert projection.outplans == {} and projection.versions[uuid.UUID(OUTPLAN)] == 5


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_parse_event_exposes_the_trace_context_and_writes_it_back_in_place() -> None:
    body = event_body(
        "outplan_created", 1, trace={"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"}
    )
    event = parse_event(body)
    assert (event.traceparent, event.tracestate) == (TRACEPARENT, "congo=t61rcWkgMzE")
    assert event.model_dump_json().encode() == body.replace(b": ", b":").replace(b", ", b",")


def test_an_event_without_trace_context_has_no_such_attributes_not_nulls() -> None:
    body = event_body("outplan_updated", 2)
    event = parse_event(body)
    assert (event.traceparent, event.tracestate) == (None, None)
    dumped = event.model_dump_json()
    assert "traceparent" not in dumped and "tracestate" not in dumped
