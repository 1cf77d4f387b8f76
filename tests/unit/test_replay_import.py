"""``replay --import``: what is read from an exported file, and what is not in it."""

import argparse
import json
from pathlib import Path

import pytest

from tests.support.events import event_body
from worker.entrypoints.replay import BadArguments, _read_file, add_arguments, selection_from
from worker.persistence.history import EventFilter

pytestmark = pytest.mark.unit


def selection(*args: str) -> EventFilter:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return selection_from(parser.parse_args(list(args)))


def test_an_imported_event_is_its_line_and_never_has_a_correlation_id(tmp_path: Path) -> None:
    # The correlation_id is an AMQP property, not part of the body, and the export writes bodies
    # only: whatever a body holds, an imported event goes out without one (as the README says).
    created = event_body("outplan_created", 1)
    outplan_id = json.loads(created)["subject"]
    updated = json.loads(event_body("outplan_updated", 2, outplan_id=outplan_id))
    updated["correlationid"] = "not-the-commands-message-id"  # a member some other tool added
    updated_line = json.dumps(updated).encode()
    exported = tmp_path / "events.jsonl"
    exported.write_bytes(created + b"\n\n" + updated_line + b"\n")
    events = _read_file(exported, selection())
    assert [(e.eventsequence, e.event_type, e.outplan_id, e.body) for e in events] == [
        (1, "outplan_created", outplan_id, created),
        (2, "outplan_updated", outplan_id, updated_line),
    ]
    assert [e.correlation_id for e in events] == [None, None]
    assert [e.eventsequence for e in _read_file(exported, selection("--from-seq", "2"))] == [2]


def test_a_line_that_is_not_an_exported_event_is_named(tmp_path: Path) -> None:
    exported = tmp_path / "events.jsonl"
    exported.write_bytes(event_body("outplan_created", 1) + b'\n{"hello": "world"}\n')
    with pytest.raises(BadArguments, match=r"events\.jsonl:2 is not an exported event"):
        _read_file(exported, selection())
