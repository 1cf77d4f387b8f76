"""Decoding raw messages: every kind of invalid input gets its own reason."""

import json
import uuid
from typing import Any

import pytest

from contracts import CreateOutplan, GetOutplan
from worker import paging
from worker.requests import Rejection, Request, decode

pytestmark = pytest.mark.unit

CUSTOMER = str(uuid.uuid4())
CREATE = json.dumps({"customer_id": CUSTOMER, "source": {"type": "tel", "target": "+15559876543"}}).encode()


def run(body: bytes = CREATE, **props: Any) -> Request | Rejection:
    options: dict[str, Any] = {
        "content_type": "application/json", "routing_key": "outplan.create", "type_": None,
        "message_id": "m-1", "correlation_id": None,
    }
    options.update(props)
    return decode(body, **options)


def rejected(result: Request | Rejection) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.status_code == 400 and result.status == "INVALID_ARGUMENT"
    return result


def test_a_valid_create_decodes() -> None:
    result = run()
    assert isinstance(result, Request)
    assert isinstance(result.command, CreateOutplan) and result.message_id == "m-1"


def test_command_name_from_type_when_sent_to_the_queue_directly() -> None:
    body = json.dumps({"customer_id": CUSTOMER, "id": str(uuid.uuid4())}).encode()
    result = run(body, routing_key="outplan-worker.commands", type_="outplan.get", message_id=None)
    assert isinstance(result, Request) and isinstance(result.command, GetOutplan)


@pytest.mark.parametrize(
    ("body", "props", "reason", "text"),
    [
        (b"{not json", {}, "MALFORMED_JSON", "not UTF-8 JSON"),
        (b"\xff\xfe{}", {}, "MALFORMED_JSON", "not UTF-8 JSON"),
        (b"[1, 2]", {}, "NOT_AN_OBJECT", "must be a JSON object"),
        (b'"text"', {}, "NOT_AN_OBJECT", "must be a JSON object"),
        (CREATE, {"routing_key": "outplan.rename", "type_": None}, "UNKNOWN_COMMAND", "outplan.rename"),
        (CREATE, {"message_id": None}, "MESSAGE_ID_REQUIRED", "message_id"),
        (CREATE, {"message_id": ""}, "MESSAGE_ID_REQUIRED", "message_id"),
        (CREATE, {"content_type": "text/plain"}, "UNSUPPORTED_CONTENT_TYPE", "text/plain"),
        (CREATE, {"content_type": "application/json; charset=latin-1"}, "UNSUPPORTED_CONTENT_TYPE", "latin-1"),
        (b" " * (64 * 1024) + CREATE, {}, "BODY_TOO_LARGE", "65536 bytes"),
        (b'{"customer_id": "x"}', {}, "VALIDATION_FAILED", "customer_id must be a UUID"),
    ],
)
def test_invalid_input_is_rejected_with_a_reason(body: bytes, props: dict[str, Any], reason: str, text: str) -> None:
    rejection = rejected(run(body, **props))
    assert rejection.reason == reason
    assert text in rejection.message
    reply = json.loads(rejection.reply().to_json())
    assert reply["status_code"] == 400 and reply["error"]["reason"] == reason and "data" not in reply


def test_validation_failures_carry_field_details() -> None:
    body = json.dumps({"customer_id": CUSTOMER, "source": {"type": "tel", "target": "+15559876543"},
                       "dial_timeout": 30}).encode()
    reply = json.loads(rejected(run(body)).reply().to_json())
    assert reply["error"]["details"] == [
        {"field": "dial_timeout",
         "message": "dial_timeout is in milliseconds; 30 ms is too short — for 30 seconds send 30000"}
    ]


def test_queries_need_no_message_id() -> None:
    body = json.dumps({"customer_id": CUSTOMER}).encode()
    assert isinstance(run(body, routing_key="outplan.list", message_id=None), Request)


def test_a_missing_content_type_is_taken_as_json() -> None:
    assert isinstance(run(content_type=None), Request)


def test_a_page_token_that_is_not_ours_is_a_field_error() -> None:
    body = json.dumps({"customer_id": CUSTOMER, "page_token": "o1.@@@"}).encode()
    rejection = rejected(run(body, routing_key="outplan.list"))
    assert rejection.reason == "VALIDATION_FAILED"
    assert [d.field for d in rejection.details] == ["page_token"]


def test_the_body_hash_tells_bodies_and_commands_apart() -> None:
    first, second = run(), run(CREATE + b" ")
    assert isinstance(first, Request) and isinstance(second, Request)
    assert first.body_hash != second.body_hash
    assert first.body_hash == run().body_hash  # type: ignore[union-attr]


def test_page_tokens_round_trip() -> None:
    from datetime import UTC, datetime

    moment = datetime(2022, 4, 28, 1, 50, 23, 414000, tzinfo=UTC)
    outplan_id = uuid.uuid4()
    position = paging.decode(paging.encode(moment, outplan_id))
    assert position is not None
    assert position.id == outplan_id and position.tm_create == moment


def test_a_bare_tm_create_token_is_accepted() -> None:
    position = paging.decode("2022-04-28 01:50:23.414000")
    assert position is not None and position.id is None
    assert paging.decode("") is None
    with pytest.raises(paging.InvalidPageToken):
        paging.decode("yesterday")


def _create_with(**fields: Any) -> str:
    """A create body as JSON text, so escapes such as a lone ``\\ud800`` can be written raw."""
    body = {"customer_id": CUSTOMER, "source": {"type": "sip", "target": "bob@example.com"}, **fields}
    return json.dumps(body)


@pytest.mark.parametrize(("message_id", "rule"), [
    ("abc\u0000def", "message_id must not contain the NUL character (\\u0000)"),
    ("abc\ud800def", "message_id must not contain a lone UTF-16 surrogate"),
    ("\udcc3(bad", "message_id must not contain a lone UTF-16 surrogate"),  # bytes read with surrogateescape
    ("x" * 256, "message_id must be at most 255 characters"),
])
def test_a_message_id_the_database_cannot_hold_is_refused_naming_it(message_id: str, rule: str) -> None:
    rejection = rejected(run(message_id=message_id))
    assert rejection.reason == "VALIDATION_FAILED" and rejection.message.startswith(rule)
    assert [d.field for d in rejection.details] == ["message_id"]
    reply = json.loads(rejection.reply().to_json())  # the reply itself can be sent
    assert reply["error"]["details"][0]["field"] == "message_id"


@pytest.mark.parametrize(("body", "field"), [
    (_create_with(name="a\\u0000b"), "name"),
    (_create_with(detail="\\u0000"), "detail"),
    (_create_with(source={"type": "sip", "target": "b\\u0000b@example.com"}), "source.target"),
    (_create_with(source={"type": "tel", "target": "+15559876543", "name": "\\u0000"}), "source.name"),
    (_create_with(name="a\\ud800b"), "name"),
    (_create_with(detail="\\udfff"), "detail"),
    (_create_with(source={"type": "tel", "target": "+15559876543", "target_name": "\\udc00x"}),
     "source.target_name"),
    (_create_with(source={"type": "sip", "target": "\\ud800@example.com"}), "source.target"),
    (json.dumps({"customer_id": "\\ud800"}), "customer_id"),
])
def test_a_body_string_the_database_cannot_hold_is_refused_naming_it(body: str, field: str) -> None:
    # json.dumps escaped the backslashes: undo that, so the body carries the JSON escape itself.
    raw = body.replace("\\\\u", "\\u").encode()
    rejection = rejected(run(raw))
    assert rejection.reason == "VALIDATION_FAILED", rejection.message
    assert [d.field for d in rejection.details] == [field]
    assert rejection.message.startswith(f"{field} must not contain")
    assert json.loads(rejection.reply().to_json())["error"]["details"][0]["field"] == field


def test_a_lone_surrogate_in_a_key_is_refused_naming_the_key() -> None:
    rejection = rejected(run(b'{"customer_id": "%s", "\\ud800": 1}' % CUSTOMER.encode()))
    assert rejection.reason == "VALIDATION_FAILED"
    assert [d.field for d in rejection.details] == ['"\\ud800"']
    rejection.reply().to_json()


def test_a_valid_surrogate_pair_is_text() -> None:
    result = run(_create_with(name="\\ud83d\\ude00").replace("\\\\u", "\\u").encode())
    assert isinstance(result, Request) and result.command.name == "\U0001F600"  # type: ignore[union-attr]


@pytest.mark.parametrize("token", [
    "o1.f_________8AAAAAAAAAAAAAAAAAAAAB",  # a time far past year 9999
    "o1.gAAAAAAAAAAAAAAAAAAAAA",  # the earliest 64-bit time, and too short
    "o1.gAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",  # the earliest 64-bit time
    "o1.!!!!",
    "0000-01-01 00:00:00.000000",
])
def test_a_page_token_that_names_no_position_is_refused_naming_it(token: str) -> None:
    body = json.dumps({"customer_id": CUSTOMER, "page_token": token}).encode()
    rejection = rejected(run(body, routing_key="outplan.list", message_id=None))
    assert rejection.reason == "VALIDATION_FAILED" and rejection.message.startswith("page_token ")
    assert [d.field for d in rejection.details] == ["page_token"]
