"""Decoding raw messages: every kind of invalid input gets its own reason."""

import gzip
import hashlib
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import CreateOutplan, GetOutplan
from tests.support.commands import CUSTOMER, SOURCE, create_body, create_json, create_text
from tests.support.spellings import spelled_otherwise
from worker import paging
from worker.requests import Rejection, Request, decode, strict_json_problems

pytestmark = pytest.mark.unit

CREATE = create_json()


def run(body: bytes = CREATE, **props: Any) -> Request | Rejection:
    options: dict[str, Any] = {
        "content_type": "application/json",
        "routing_key": "outplan.create",
        "type_": None,
        "message_id": "m-1",
        "correlation_id": None,
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
        (
            CREATE,
            {"content_type": "application/json; charset=latin-1"},
            "UNSUPPORTED_CONTENT_TYPE",
            "latin-1",
        ),
        (b" " * (64 * 1024) + CREATE, {}, "BODY_TOO_LARGE", "65536 bytes"),
        (b'{"customer_id": "x"}', {}, "VALIDATION_FAILED", "customer_id must be a UUID"),
    ],
)
def test_invalid_input_is_rejected_with_a_reason(
    body: bytes, props: dict[str, Any], reason: str, text: str
) -> None:
    rejection = rejected(run(body, **props))
    assert rejection.reason == reason
    assert text in rejection.message
    reply = json.loads(rejection.reply().to_json())
    assert reply["status_code"] == 400 and reply["error"]["reason"] == reason and "data" not in reply


def test_validation_failures_carry_field_details() -> None:
    body = create_json(dial_timeout=30)
    reply = json.loads(rejected(run(body)).reply().to_json())
    assert reply["error"]["details"] == [
        {
            "field": "dial_timeout",
            "message": "dial_timeout is in milliseconds; 30 ms is too short — for 30 seconds send 30000",
        }
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


@pytest.mark.parametrize(
    ("message_id", "rule"),
    [
        ("abc\u0000def", "message_id must not contain the NUL character (\\u0000)"),
        ("abc\ud800def", "message_id must not contain a lone UTF-16 surrogate"),
        (
            "\udcc3(bad",
            "message_id must not contain a lone UTF-16 surrogate",
        ),  # bytes read with surrogateescape
        ("x" * 256, "message_id must be at most 255 characters"),
    ],
)
def test_a_message_id_the_database_cannot_hold_is_refused_naming_it(message_id: str, rule: str) -> None:
    rejection = rejected(run(message_id=message_id))
    assert rejection.reason == "VALIDATION_FAILED" and rejection.message.startswith(rule)
    assert [d.field for d in rejection.details] == ["message_id"]
    reply = json.loads(rejection.reply().to_json())  # the reply itself can be sent
    assert reply["error"]["details"][0]["field"] == "message_id"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_create_with(name="a\\u0000b"), "name"),
        (_create_with(detail="\\u0000"), "detail"),
        (_create_with(source={"type": "sip", "target": "b\\u0000b@example.com"}), "source.target"),
        (_create_with(source={**SOURCE, "name": "\\u0000"}), "source.name"),
        (_create_with(name="a\\ud800b"), "name"),
        (_create_with(detail="\\udfff"), "detail"),
        (
            _create_with(source={**SOURCE, "target_name": "\\udc00x"}),
            "source.target_name",
        ),
        (_create_with(source={"type": "sip", "target": "\\ud800@example.com"}), "source.target"),
        (json.dumps({"customer_id": "\\ud800"}), "customer_id"),
    ],
)
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
    assert isinstance(result, Request) and isinstance(result.command, CreateOutplan)
    assert result.command.name == "\U0001f600"


@pytest.mark.parametrize(
    "token",
    [
        "o1.f_________8AAAAAAAAAAAAAAAAAAAAB",  # a time far past year 9999
        "o1.gAAAAAAAAAAAAAAAAAAAAA",  # the earliest 64-bit time, and too short
        "o1.gAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",  # the earliest 64-bit time
        "o1.!!!!",
        "0000-01-01 00:00:00.000000",
    ],
)
def test_a_page_token_that_names_no_position_is_refused_naming_it(token: str) -> None:
    body = json.dumps({"customer_id": CUSTOMER, "page_token": token}).encode()
    rejection = rejected(run(body, routing_key="outplan.list", message_id=None))
    assert rejection.reason == "VALIDATION_FAILED" and rejection.message.startswith("page_token ")
    assert [d.field for d in rejection.details] == ["page_token"]


# ---- strict JSON: a body means one thing to every reader ----------------------------------------

OTHER_CUSTOMER = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("body", "key"),
    [
        # Whose outplan is it? The first customer_id to one parser, the last to another.
        (create_text(f'"customer_id": "{OTHER_CUSTOMER}"'), "customer_id"),
        (create_text(f'"customer_id": "{CUSTOMER}"'), "customer_id"),
        (
            f'{{"customer_id": "{CUSTOMER}",'
            ' "source": {"type": "sip", "type": "tel", "target": "+15559876543"}}',
            "source.type",
        ),
        (create_text(f'"customer\\u005fid": "{OTHER_CUSTOMER}"'), "customer_id"),
        (create_text('"name": "a:b", "name": "c"'), "name"),
        (create_text('"name": "\\u003a", "name": "c"'), "name"),
        (create_text('"x": {"y": [{"z": 1, "z": 1}]}'), "x.y.0.z"),
        (create_text('"a b": 1, "a b": 2'), '"a b"'),
    ],
)
def test_a_key_twice_in_one_object_is_malformed_json_naming_it(body: str, key: str) -> None:
    rejection = rejected(run(body.encode()))
    assert rejection.reason == "MALFORMED_JSON"
    assert [d.field for d in rejection.details] == [key]
    assert f"the key {key} appears more than once" in rejection.message
    assert "RFC 8259" in rejection.message


def test_every_repeated_key_is_named_in_document_order() -> None:
    body = (
        f'{{"customer_id": "{CUSTOMER}", "customer_id": "{CUSTOMER}", "source": {{"type": "tel", '
        f'"target": "+15559876543", "target": "+15559876543"}}}}'
    )
    assert [d.field for d in rejected(run(body.encode())).details] == ["customer_id", "source.target"]


def test_thousands_of_repeats_are_named_ten_at_a_time() -> None:
    body = create_text('"x": [' + ",".join(['{"a": 1, "a": 2}'] * 3000) + "]")
    rejection = rejected(run(body.encode()))
    assert rejection.reason == "MALFORMED_JSON"
    assert [d.field for d in rejection.details] == [f"x.{i}.a" for i in range(10)]
    assert rejection.message.endswith("; and 2990 more")


def test_a_problem_past_thousands_of_arrays_is_still_refused_and_named() -> None:
    body = create_text('"x": [' + ",".join(["[0]"] * 5000) + "]", '"y": NaN')
    rejection = rejected(run(body.encode()))
    assert rejection.reason == "MALFORMED_JSON" and "NaN" in rejection.message


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_malformed_json_naming_the_token(token: str) -> None:
    body = create_text(f'"dial_timeout": {token}').encode()
    rejection = rejected(run(body))
    assert rejection.reason == "MALFORMED_JSON"
    assert [d.field for d in rejection.details] == ["dial_timeout"]
    assert f"dial_timeout is {token}, which is not a JSON number" in rejection.message


def test_nan_anywhere_is_named_where_it_is() -> None:
    body = f'{{"customer_id": "{CUSTOMER}", "source": {{"type": "tel", "target": NaN}}}}'.encode()
    assert [d.field for d in rejected(run(body)).details] == ["source.target"]
    assert rejected(run(b"NaN")).reason == "MALFORMED_JSON"


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "NaN", "detail": "Infinity"},  # words in strings are text, not numbers
        {"name": "a:b", "detail": "12:30 : call back"},  # colons in strings are not keys
        {"name": "caf\\u00e9 \\u003a"},
    ],
    ids=["words", "colons", "escapes"],
)
def test_strict_json_that_looks_unusual_is_accepted(fields: dict[str, str]) -> None:
    extra = ", ".join(f'"{k}": "{v}"' for k, v in fields.items())
    sip = '{"type": "sip", "target": "bob@example.com:5060"}'
    body = f'{{"customer_id": "{CUSTOMER}", "source": {sip}, {extra}}}'
    assert isinstance(run(body.encode()), Request)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"30000"', "dial_timeout must be an integer"),
        ("30000.5", "dial_timeout must be an integer"),
        ("30000.0", "dial_timeout must be an integer"),
        ("true", "dial_timeout must be an integer"),
        ("1e400", "dial_timeout must be an integer"),  # JSON, if out of range: a validation failure as before
    ],
)
def test_strict_types_are_still_strict(value: str, message: str) -> None:
    body = create_text(f'"dial_timeout": {value}').encode()
    rejection = rejected(run(body))
    assert rejection.reason == "VALIDATION_FAILED" and rejection.message.startswith(message)
    assert [d.field for d in rejection.details] == ["dial_timeout"]


def test_unknown_fields_are_still_refused_and_named() -> None:
    body = (
        f'{{"customer_id": "{CUSTOMER}", "source": {{"type": "tel", "target": "+15559876543", "x": 1}}, '
        f'"bogus": true}}'
    )
    rejection = rejected(run(body.encode()))
    assert rejection.reason == "VALIDATION_FAILED"
    assert [d.field for d in rejection.details] == ["source.x", "bogus"]


# Objects written out by hand, so that a key can appear twice, in any spelling JSON allows.
_keys = st.sampled_from(["a", "b", "a:b", ":", "\\u0061", "\\u003a", "\\u003A", "\\\\", '\\"'])
_scalars = st.sampled_from(["1", "-0.5", "true", "null", '"x"', '"x:y"', '"\\u003a"', '":"', '""'])


def _decoded(key: str) -> str:
    return str(json.loads(f'"{key}"'))


@st.composite
def _documents(draw: st.DrawFn, depth: int = 0) -> tuple[str, bool]:
    """JSON text with random spacing and whether some object in it repeats a key."""
    space = draw(st.sampled_from(["", " ", "\n  "]))
    if depth < 3 and draw(st.booleans()):
        members = draw(st.lists(st.tuples(_keys, _documents(depth + 1)), max_size=5))
        keys = [_decoded(k) for k, _ in members]
        repeated = len(set(keys)) != len(keys) or any(inner for _, (_, inner) in members)
        text = "{" + ",".join(f'{space}"{k}"{space}:{space}{v}' for k, (v, _) in members) + space + "}"
        return text, repeated
    if depth < 3 and draw(st.booleans()):
        items = draw(st.lists(_documents(depth + 1), max_size=3))
        return "[" + f",{space}".join(v for v, _ in items) + "]", any(inner for _, inner in items)
    return draw(_scalars), False


@given(_documents())
def test_the_quick_check_finds_exactly_the_repeated_keys(document: tuple[str, bool]) -> None:
    text, repeated = document
    assert bool(strict_json_problems(text.encode())) == repeated, text


# ---- content_encoding and content_type ----------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "", "identity", "IDENTITY", " Identity "])
def test_a_body_sent_as_it_is_is_accepted(encoding: str | None) -> None:
    assert isinstance(run(content_encoding=encoding), Request)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", CREATE),  # says gzip, is not
        ("gzip", gzip.compress(CREATE)),  # is gzip: refused too, not decompressed
        ("GZIP", gzip.compress(CREATE)),
        ("deflate", CREATE),
        ("br", CREATE),
        ("gzip, identity", CREATE),
        ("utf-8", CREATE),
    ],
)
def test_any_other_content_encoding_is_refused_naming_it(encoding: str, body: bytes) -> None:
    rejection = rejected(run(body, content_encoding=encoding))
    assert rejection.reason == "UNSUPPORTED_CONTENT_ENCODING"
    assert rejection.message.startswith(f"content_encoding {encoding!r} is not supported")
    assert [d.field for d in rejection.details] == ["content_encoding"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf8",
        "application/json;charset=UTF8",
        'application/json; charset="utf8"',
        'application/json; charset="UTF-8"',
        "Application/JSON; Charset=Utf-8",
        "application/json ; charset = utf-8",
        "application/json;",
        "application/json; ; charset=utf-8",
    ],
)
def test_json_in_utf8_is_accepted_however_spelled(content_type: str) -> None:
    assert isinstance(run(content_type=content_type), Request)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-16",
        "application/json; charset=utf88",
        "application/json; charset=latin1",
        "application/json; charset",
        "application/json; utf8",
        "application/json; charset=utf-8; profile=x",
        'application/json; charset="utf8',
        "application/jsonx; charset=utf8",
    ],
)
def test_other_charsets_and_parameters_are_still_refused(content_type: str) -> None:
    rejection = rejected(run(content_type=content_type))
    assert rejection.reason == "UNSUPPORTED_CONTENT_TYPE" and repr(content_type) in rejection.message


# ---- idempotency: the fingerprint is what the command means ------------------------------------

CREATE_FIELDS = create_body(name="renewals", dial_timeout=45000)


def fingerprint_of(body: bytes, command: str = "outplan.create") -> bytes:
    request = run(body, routing_key=command)
    assert isinstance(request, Request), request
    assert (
        request.fingerprint
        and request.raw_body_hash == hashlib.sha256(command.encode() + b"\0" + body).digest()
    )
    return request.fingerprint


SAME_MEANING = spelled_otherwise(CREATE_FIELDS)


@pytest.mark.parametrize("spelling", SAME_MEANING.values(), ids=SAME_MEANING.keys())
def test_the_same_command_spelled_otherwise_has_the_same_fingerprint(spelling: str) -> None:
    original = json.dumps(CREATE_FIELDS).encode()
    assert spelling.encode() != original
    assert fingerprint_of(spelling.encode()) == fingerprint_of(original)


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Renewals"},
        {"dial_timeout": 45001},
        {"customer_id": OTHER_CUSTOMER},
        {"source": {"type": "tel", "target": "+15559876544"}},
        {"detail": " "},
    ],
)
def test_a_command_that_means_something_else_has_another_fingerprint(change: dict[str, Any]) -> None:
    assert fingerprint_of(json.dumps({**CREATE_FIELDS, **change}).encode()) != fingerprint_of(
        json.dumps(CREATE_FIELDS).encode()
    )


def test_the_fingerprint_names_the_command() -> None:
    body = json.dumps({"customer_id": CUSTOMER, "id": str(uuid.uuid4())}).encode()
    delete = fingerprint_of(body, "outplan.delete")
    assert delete == fingerprint_of(body.replace(b" ", b""), "outplan.delete")
    update = json.dumps(
        {"customer_id": CUSTOMER, "id": json.loads(body)["id"], "name": "", "detail": ""}
    ).encode()
    assert fingerprint_of(update, "outplan.update_basic_info") != delete


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        ("outplan.create", {**CREATE_FIELDS, "name": "Zürich — 東京", "detail": 'say "hi"\n'}),
        (
            "outplan.create",
            {
                "customer_id": CUSTOMER,
                "source": {
                    "type": "sip",
                    "target": "bob@example.com:5060",
                    "target_name": "Bob",
                    "name": "n",
                    "detail": "d",
                },
            },
        ),
        (
            "outplan.update_basic_info",
            {"customer_id": CUSTOMER, "id": str(uuid.uuid4()), "name": "n", "detail": ""},
        ),
        (
            "outplan.update_dial_info",
            {
                "customer_id": CUSTOMER,
                "id": str(uuid.uuid4()),
                "source": SOURCE,
                "dial_timeout": 1000,
                "try_interval": 1000,
                **{f"max_try_count_{i}": i for i in range(5)},
            },
        ),
        ("outplan.delete", {"customer_id": CUSTOMER, "id": str(uuid.uuid4())}),
    ],
)
def test_the_fingerprint_is_the_sorted_json_dump_of_the_validated_command(
    command: str, fields: dict[str, Any]
) -> None:
    request = run(json.dumps(fields).encode(), routing_key=command)
    assert isinstance(request, Request), request
    canonical = json.dumps(
        request.command.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert request.fingerprint == hashlib.sha256(command.encode() + b"\0" + canonical).digest()
