"""Every validation rule of the wire contract, accepted and rejected, with the error text."""

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import (
    ListOutplans,
    UpdateBasicInfo,
    UpdateDialInfo,
    summarise,
    validation_details,
)
from tests.support.commands import CUSTOMER, SOURCE, create_body, errors, validated

pytestmark = pytest.mark.unit


def test_defaults_fill_optional_fields() -> None:
    cmd = validated(create_body())
    assert (cmd.name, cmd.detail, cmd.dial_timeout, cmd.try_interval) == ("", "", 30000, 60000)
    assert [getattr(cmd, f"max_try_count_{i}") for i in range(5)] == [0, 0, 0, 0, 0]
    assert (cmd.source.target_name, cmd.source.name, cmd.source.detail) == ("", "", "")


@pytest.mark.parametrize("field", ["customer_id"])
def test_customer_id_must_be_a_uuid(field: str) -> None:
    assert errors(create_body(customer_id="42")) == {"customer_id": "customer_id must be a UUID string"}
    assert errors(create_body(customer_id=42)) == {"customer_id": "customer_id must be a UUID string"}


def test_id_must_be_a_uuid() -> None:
    body = {"customer_id": CUSTOMER, "id": "nope", "name": "", "detail": ""}
    assert errors(body, UpdateBasicInfo) == {"id": "id must be a UUID string"}


@pytest.mark.parametrize(("field", "limit"), [("name", 255), ("detail", 4096)])
def test_text_lengths(field: str, limit: int) -> None:
    validated(create_body(**{field: "é" * limit}))
    assert errors(create_body(**{field: "x" * (limit + 1)})) == {
        field: f"{field} must be at most {limit} characters"
    }


@pytest.mark.parametrize("field", ["target_name", "name", "detail"])
def test_source_text_lengths(field: str) -> None:
    ok = {**SOURCE, field: "x" * 255}
    assert getattr(validated(create_body(source=ok)).source, field) == "x" * 255
    bad = {**ok, field: "x" * 256}
    assert errors(create_body(source=bad)) == {
        f"source.{field}": f"source.{field} must be at most 255 characters"
    }


def test_source_type_is_tel_or_sip() -> None:
    assert errors(create_body(source={"type": "fax", "target": "1"})) == {
        "source.type": "source.type must be one of 'tel' or 'sip'"
    }


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("+15559876543", "+15559876543"),
        ("+1 (555) 987-6543", "+15559876543"),
        ("+44.20.7946.0018", "+442079460018"),
        ("+800 1234 5678", "+80012345678"),  # a non-geographic (freephone) country code
    ],
)
def test_tel_targets_are_normalised(given: str, stored: str) -> None:
    cmd = validated(create_body(source={"type": "tel", "target": given}))
    assert cmd.source.target == stored


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("15559876543", "must be an international number starting with + or 00"),
        ("", "must be an international number starting with + or 00"),
        ("+0155598765", "has an unknown country code"),
        ("+123456", "is too short for country code +1"),
        ("+1234567890123456", "is too long"),
        ("+1555abc6543", "may contain only digits"),
    ],
)
def test_tel_targets_must_be_international_numbers(target: str, rule: str) -> None:
    message = errors(create_body(source={"type": "tel", "target": target}))["source.target"]
    assert message.startswith(f"source.target {rule}"), message


def test_sip_host_is_lower_cased() -> None:
    cmd = validated(create_body(source={"type": "sip", "target": "Bob@PBX.Example.COM"}))
    assert cmd.source.target == "Bob@pbx.example.com"


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("bob", "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com); there is no @"),
        (
            "@host",
            "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com); the user part before @ is "
            "empty",
        ),
        (
            "bob@",
            "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com); the host after @ is empty",
        ),
        ("bob@ho st", "has an invalid host name label 'ho st'"),
        ("b@" + "h" * 260, "has a host name longer than 253 characters"),
        ("b" * 250 + "@example.com", "must be at most 255 characters as a SIP address"),
    ],
)
def test_sip_targets_must_be_user_at_host(target: str, rule: str) -> None:
    message = errors(create_body(source={"type": "sip", "target": target}))["source.target"]
    assert message.startswith(f"source.target {rule}"), message


@pytest.mark.parametrize(
    ("field", "low", "high"), [("dial_timeout", 1000, 600000), ("try_interval", 1000, 604800000)]
)
def test_millisecond_bounds(field: str, low: int, high: int) -> None:
    for value in (low, high):
        assert getattr(validated(create_body(**{field: value})), field) == value
    assert errors(create_body(**{field: high + 1})) == {field: f"{field} must be at most {high}"}
    assert errors(create_body(**{field: 0})) == {field: f"{field} must be at least 1000 (milliseconds)"}
    assert errors(create_body(**{field: -5})) == {field: f"{field} must be at least 1000 (milliseconds)"}


def test_seconds_sent_by_mistake_get_a_hint() -> None:
    assert errors(create_body(dial_timeout=30)) == {
        "dial_timeout": "dial_timeout is in milliseconds; 30 ms is too short — for 30 seconds send 30000"
    }
    assert errors(create_body(try_interval=999))["try_interval"].endswith("for 999 seconds send 999000")


@pytest.mark.parametrize("i", range(5))
def test_max_try_counts(i: int) -> None:
    field = f"max_try_count_{i}"
    for value in (0, 100):
        assert getattr(validated(create_body(**{field: value})), field) == value
    assert errors(create_body(**{field: 101})) == {field: f"{field} must be at most 100"}
    assert errors(create_body(**{field: -1})) == {field: f"{field} must be at least 0"}


@pytest.mark.parametrize("value", ["30000", 30000.5, 30000.0, True, None, [30000]])
def test_integers_are_strict_json_integers(value: Any) -> None:
    message = errors(create_body(dial_timeout=value))["dial_timeout"]
    assert message.startswith("dial_timeout must be an integer")


def test_strings_are_strict() -> None:
    assert errors(create_body(name=5)) == {"name": "name must be a string"}


def test_nul_is_refused_in_text() -> None:
    assert errors(create_body(detail="a\u0000b")) == {
        "detail": "detail must not contain the NUL character (\\u0000)"
    }


def test_unknown_fields_are_named() -> None:
    assert errors(create_body(colour="red", source={**SOURCE, "x": 1})) == {
        "colour": "colour is not a known field",
        "source.x": "source.x is not a known field",
    }


def test_missing_required_fields_are_named() -> None:
    assert errors({"customer_id": CUSTOMER, "id": str(uuid.uuid4())}, UpdateDialInfo) == {
        field: f"{field} is required"
        for field in ["source", "dial_timeout", "try_interval", *[f"max_try_count_{i}" for i in range(5)]]
    }
    assert errors({"source": SOURCE}) == {"customer_id": "customer_id is required"}


def test_every_failing_field_is_listed_in_the_summary() -> None:
    with pytest.raises(ValidationError) as info:
        validated(create_body(dial_timeout=30, max_try_count_2=500, name=1))
    details = validation_details(info.value)
    assert [d.field for d in details] == ["name", "dial_timeout", "max_try_count_2"]
    summary = summarise(details)
    assert summary.startswith("3 fields are invalid: ")
    assert all(d.message in summary for d in details)


@pytest.mark.parametrize(("size", "ok"), [(1, True), (100, True), (0, False), (101, False)])
def test_page_size_bounds(size: int, ok: bool) -> None:
    body = {"customer_id": CUSTOMER, "page_size": size}
    if ok:
        assert validated(body, ListOutplans).page_size == size
    else:
        assert "page_size" in errors(body, ListOutplans)
    assert validated({"customer_id": CUSTOMER}, ListOutplans).page_size == 100


def test_odd_unknown_keys_are_quoted_so_the_field_is_never_blank() -> None:
    assert errors(create_body(**{"": 1, "a b": 2})) == {
        '""': '"" is not a known field',
        '"a b"': '"a b" is not a known field',
    }
