"""Caller IDs as people type them: telephone numbers and SIP addresses in commands, control
characters in names, and read models that take stored values as stored."""

import json
import re
import string
import uuid
from typing import Any

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from contracts import (
    CreateOutplan,
    Outplan,
    Projection,
    StoredSource,
    UpdateBasicInfo,
    UpdateDialInfo,
    parse_event,
)
from contracts.addresses import WHITE_SPACE, check_reads_back, normalise_sip, normalise_tel
from contracts.projection import Applied
from tests.support.caller_ids import ACCEPTED, REFUSED, row_ids
from tests.support.commands import CUSTOMER, SOURCE, create_body, dial_info_body, errors, validated
from tests.support.events import event_body

pytestmark = pytest.mark.unit


COMMANDS = {"create": CreateOutplan, "update_dial_info": UpdateDialInfo}
NORMALISE = {"tel": normalise_tel, "sip": normalise_sip}


def with_target(kind: str, target: str, model: type[BaseModel] = CreateOutplan) -> dict[str, Any]:
    """A valid body of ``model``'s command but for this caller ID."""
    source = {"type": kind, "target": target}
    return dial_info_body(source=source) if model is UpdateDialInfo else create_body(source=source)


def stored_target(kind: str, target: str, model: type[BaseModel] = CreateOutplan) -> str:
    command = validated(with_target(kind, target, model), model)
    assert isinstance(command, (CreateOutplan, UpdateDialInfo))
    return command.source.target


def target_error(kind: str, target: str, model: type[BaseModel] = CreateOutplan) -> str:
    found = errors(with_target(kind, target, model), model)
    assert list(found) == ["source.target"], found
    return found["source.target"]


# --- the rows a running worker is tested with too ---------------------------------------------


@pytest.mark.parametrize("model", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize(("kind", "given", "stored"), ACCEPTED, ids=row_ids(ACCEPTED))
def test_caller_ids_are_stored_as_dialled(model: type[BaseModel], kind: str, given: str, stored: str) -> None:
    assert stored_target(kind, given, model) == stored
    assert NORMALISE[kind](stored) == stored


@pytest.mark.parametrize("model", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize(("kind", "given", "message"), REFUSED, ids=row_ids(REFUSED))
def test_caller_ids_no_carrier_can_dial_are_refused_saying_why(
    model: type[BaseModel], kind: str, given: str, message: str
) -> None:
    assert target_error(kind, given, model) == f"source.target {message}"


# --- the issue's other rows, one by one ---------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        "\n+44 20 7946 0958",
        "+44 20 7946 0958\n",
        "\t+44 20 7946 0958\t",
        "\r\n+44 20 7946 0958\r\n",
        "\u00a0+44 20 7946 0958\u00a0",
        "\u3000+44 20 7946 0958\u2028",
        " +44 20 7946 0958 ",
        "+44\u202f20\u20097946\u20020958",  # narrow, thin and en spaces
        "\uff0b\uff14\uff14\u3000\uff12\uff10\u3000\uff17\uff19\uff14\uff16\u3000\uff10\uff19\uff15\uff18",
        "+44/20/7946/0958",
        "+44 20 7946\u20100958",
        "+44 20\u20137946\u20140958",
        "+44 20\u22127946\u22120958",
        "+44 20\u20117946\u20120958",
        "+44 20\u20157946 0958",
        "+44\uff0820\uff09 7946\uff0d0958",
    ],
)
def test_white_space_full_width_and_dashes_are_read_consistently(given: str) -> None:
    assert stored_target("tel", given) == "+442079460958"


@pytest.mark.parametrize(
    ("given", "char"),
    [
        ("+44 20\t7946 0958", "\\u0009 (tab)"),
        ("+44 20 7946\x070958", "\\u0007 (bell)"),
        ("+44 20 7946 \u202e0958", "\\u202e (RIGHT-TO-LEFT OVERRIDE)"),
    ],
)
def test_control_characters_inside_a_number_are_named(given: str, char: str) -> None:
    assert target_error("tel", given).startswith(
        f"source.target must not contain control or bidirectional-formatting characters; found {char}"
    )


@pytest.mark.parametrize(
    ("given", "rule"),
    [
        ("alice@example.com:0", "has an invalid port '0'"),
        (
            "alice@\x07example.com",
            "must not contain control or bidirectional-formatting characters; "
            "found \\u0007 (bell) at position 6",
        ),
        (
            "al\u202eice@example.com",
            "must not contain control or bidirectional-formatting characters; "
            "found \\u202e (RIGHT-TO-LEFT OVERRIDE) at position 2",
        ),
        (
            "alice@exa\u2066mple.com",
            "must not contain control or bidirectional-formatting characters; "
            "found \\u2066 (LEFT-TO-RIGHT ISOLATE) at position 9",
        ),
    ],
)
def test_sip_rows_of_the_issue_are_refused(given: str, rule: str) -> None:
    assert target_error("sip", given).startswith(f"source.target {rule}")


# --- telephone numbers as people write them -------------------------------------------------

# (spelling, E.164 stored, or None and the start of the rule that refuses it)
SPELLINGS: list[tuple[str, str | None, str]] = [
    # United States and Canada (+1)
    ("+1 (555) 987-6543", "+15559876543", ""),
    ("+1.201.555.0123", "+12015550123", ""),
    ("001 212 555 0187", "+12125550187", ""),
    ("+1 416-555-0199", "+14165550199", ""),  # Toronto
    ("+1-800-555-0199", "+18005550199", ""),
    ("1-800-555-0199", None, "must be an international number starting with + or 00"),
    ("+1 800 FLOWERS", None, "may contain only digits"),
    ("+1 212 555 0187 x204", None, "must not have an extension"),
    ("+1 212 555 0187;ext=204", None, "must not have an extension"),
    ("+1 011 555 0187", None, "is not a number of country code +1"),  # no area code starts with 0
    ("+1 555 9876", None, "is too short for country code +1"),
    # United Kingdom (+44)
    ("+44 (0)161 496 0000", "+441614960000", ""),
    ("0044 7700 900123", "+447700900123", ""),
    ("+44 7700-900-123", "+447700900123", ""),
    ("+44 20 7946 095", None, "is not a number of country code +44"),
    ("+44 20 7946 0958 ext. 12", None, "must not have an extension"),
    # Germany (+49)
    ("+49 (0)30 1234567", "+49301234567", ""),
    ("0049 30/1234567", "+49301234567", ""),
    ("+49 89 123456-78", "+498912345678", ""),
    # France (+33)
    ("+33 1 23 45 67 89", "+33123456789", ""),
    ("0033 (0)1 23 45 67 89", "+33123456789", ""),
    ("+33.6.12.34.56.78", "+33612345678", ""),
    # Italy (+39): the leading 0 belongs to the number
    ("+39 02-1234-5678", "+390212345678", ""),
    ("+39 312 345 6789", "+393123456789", ""),
    # Spain (+34)
    ("+34 912 34 56 78", "+34912345678", ""),
    ("0034 612 34 56 78", "+34612345678", ""),
    # Netherlands (+31)
    ("+31 (0)20 123 4567", "+31201234567", ""),
    ("+31 6 12345678", "+31612345678", ""),
    # Switzerland (+41)
    ("+41 (0)44 668 18 00", "+41446681800", ""),
    ("0041 79 123 45 67", "+41791234567", ""),
    # Australia (+61)
    ("+61 (0)2 9374 4000", "+61293744000", ""),
    ("+61 412 345 678", "+61412345678", ""),
    # Japan (+81)
    ("+81 (0)3-1234-5678", "+81312345678", ""),
    ("+81 90-1234-5678", "+819012345678", ""),
    (
        "\uff0b\uff18\uff11 \uff19\uff10\uff0d\uff11\uff12\uff13\uff14\uff0d\uff15\uff16\uff17\uff18",
        "+819012345678",
        "",
    ),
    # India (+91)
    ("+91 98765 43210", "+919876543210", ""),
    ("+91 (0)22 2345 6789", "+912223456789", ""),
    # Brazil (+55)
    ("+55 (11) 91234-5678", "+5511912345678", ""),
    ("+55 21 2345-6789", "+552123456789", ""),
    # Mexico (+52): the mobile "1" after the country code was dropped from the plan in 2019
    ("+52 55 1234 5678", "+525512345678", ""),
    ("+52 1 55 1234 5678", None, "is too long for country code +52 (MX)"),
    # Elsewhere
    ("+7 (495) 123-45-67", "+74951234567", ""),
    ("+86 10 1234 5678", "+861012345678", ""),
    ("+353 (0)1 234 5678", "+35312345678", ""),
    ("+800 1234 5678", "+80012345678", ""),  # international freephone
    ("(+44) 20 7946 0958", "+442079460958", ""),
    ("\t+33 6 12 34 56 78\n", "+33612345678", ""),
    ("+00 44 20 7946 0958", None, "has an unknown country code"),
    ("+1", None, "is too short to be a phone number"),
    ("+44 20 7946 0958 0958 0958", None, "is too long to be a phone number"),
    ("+44 20 7946 0958 / +44 20 7946 0959", None, "may contain only digits"),
]


@pytest.mark.parametrize(("given", "stored", "rule"), SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_real_world_spellings(given: str, stored: str | None, rule: str) -> None:
    if stored is not None:
        assert stored_target("tel", given) == stored
        assert normalise_tel(stored) == stored
    else:
        message = target_error("tel", given)
        assert message.startswith(f"source.target {rule}"), message


def test_the_tables_span_many_countries() -> None:
    shared = [row for row in ACCEPTED + REFUSED if row[0] == "tel"]
    accepted = [stored for _, stored, _ in SPELLINGS if stored] + [s for k, _, s in ACCEPTED if k == "tel"]
    countries = {phonenumbers.parse(stored).country_code for stored in accepted}
    assert len(SPELLINGS) + len(shared) >= 40 and len(countries) >= 15


def test_a_value_that_would_not_read_back_as_itself_is_refused() -> None:
    # No real input is known to reach this guard; it is tested on the values it compares.
    with pytest.raises(ValueError) as refused:
        check_reads_back("+490301234567", "+49301234567")
    assert str(refused.value) == (
        "is ambiguous: it would be stored as +490301234567, which reads back as +49301234567; "
        "check the digits right after the country code"
    )
    with pytest.raises(ValueError, match="which does not read back as a number"):
        check_reads_back("+490301234567", None)
    check_reads_back("+442079460958", "+442079460958")  # the same number: accepted


def test_extensions_are_refused_saying_caller_ids_cannot_carry_one() -> None:
    for number in ("+44 20 7946 0958 #12", "+44 20 7946 0958 ext 12"):  # x12: a shared row
        assert "a caller ID cannot carry one" in target_error("tel", number)


def test_numbers_without_a_country_code_are_refused_even_if_local_to_somewhere() -> None:
    assert target_error("tel", "(555) 987-6543").startswith(
        "source.target must be an international number starting with + or 00"
    )


# --- SIP addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice@PBX.Example.COM", "Alice@pbx.example.com"),  # the user part keeps its case (RFC 3261 19.1.4)
        ("sip:alice@example.com", "alice@example.com"),
        ("SIP:alice@example.com:5060", "alice@example.com:5060"),
        ("alice@example.com:05060", "alice@example.com:5060"),
        ("alice@example.com:65535", "alice@example.com:65535"),
        ("alice@10.0.0.1:5060", "alice@10.0.0.1:5060"),
        ("alice@[2001:db8::1]:5061", "alice@[2001:db8::1]:5061"),
        ("+15559876543@trunk.example.net", "+15559876543@trunk.example.net"),
        ("a.b-c_d!~*'()&=+$,;?/%40x@example.com", "a.b-c_d!~*'()&=+$,;?/%40x@example.com"),
        ("alice@xn--bcher-kva.example", "alice@xn--bcher-kva.example"),
        ("alice@a-b.example.com", "alice@a-b.example.com"),
        (" alice@example.com\n", "alice@example.com"),
        ("\u00a0sip:alice@example.com\t", "alice@example.com"),
    ],
)
def test_sip_addresses_accepted(given: str, stored: str) -> None:
    assert stored_target("sip", given) == stored


@pytest.mark.parametrize(
    ("given", "rule"),
    [
        (
            "alice@example.com?subject=hi",
            "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com); URI parameters",
        ),
        (
            "alice:secret@example.com",
            "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com); "
            "the user part must not contain ':'",
        ),
        ("<sip:alice@example.com>", "must be a SIP address"),
        ("alice@example.com:", "has an invalid port ''"),
        ("alice@example.com:65536", "has an invalid port '65536'"),
        ("alice@example.com:50a", "has an invalid port '50a'"),
        ("alice@.example.com", "has an empty label"),
        ("alice@example.com.", "has an empty label"),
        ("alice@-example.com", "has an invalid host name label '-example'"),
        ("alice@example-.com", "has an invalid host name label 'example-'"),
        ("alice@exa_mple.com", "has an invalid host name label 'exa_mple'"),
        ("alice@" + "a" * 64 + ".com", "has a host name label longer than 63 characters"),
        ("alice@" + ".".join(["a" * 63] * 4), "has a host name longer than 253 characters"),
        ("alice@10.0.0.256", "has an invalid IPv4 address '10.0.0.256'"),
        ("alice@example.123", "has an invalid host 'example.123'"),
        (
            "alice@2001:db8::1",
            "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com); "
            "an IPv6 host must be written in brackets",
        ),
        ("alice@[2001:db8::g]", "has an invalid IPv6 address"),
        ("alice@[fe80::1%eth0]", "has an invalid IPv6 reference"),
        ("alice@b\u00fccher.example", "has a host that is not ASCII"),
        ("al ice@example.com", "has a character not allowed in a SIP user part: \\u0020 (SPACE)"),
        ("al\u00efce@example.com", "has a character not allowed in a SIP user part: '\u00ef'"),
        ("alice%4@example.com", "has a character not allowed in a SIP user part: '%'"),
        (
            "alice@bob@example.com",
            "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com); there is more than one @",
        ),
        ("alice", "must be a SIP address user@host[:port] (e.g. alice@pbx.example.com); there is no @"),
    ],
)
def test_sip_addresses_refused(given: str, rule: str) -> None:
    assert target_error("sip", given).startswith(f"source.target {rule}")


# --- control characters in names and free text ----------------------------------------------

NAMED = [
    ("name", lambda v: create_body(name=v)),
    ("source.name", lambda v: create_body(source={**SOURCE, "name": v})),
    (
        "source.target_name",
        lambda v: create_body(source={**SOURCE, "target_name": v}),
    ),
]


@pytest.mark.parametrize(("field", "body"), NAMED, ids=[n for n, _ in NAMED])
@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\n", "\\u000a (line feed)"),
        ("\t", "\\u0009 (tab)"),
        ("\x1b", "\\u001b (escape)"),
        ("\x7f", "\\u007f (delete)"),
        ("\x85", "\\u0085 (next line)"),
        ("\u202e", "\\u202e (RIGHT-TO-LEFT OVERRIDE)"),
        ("\u2067", "\\u2067 (RIGHT-TO-LEFT ISOLATE)"),
        ("\x01", "\\u0001"),
    ],
)
def test_names_refuse_control_and_bidi_override_characters(
    field: str, body: Any, char: str, shown: str
) -> None:
    assert errors(body(f"Sales{char}Team")) == {
        field: f"{field} must not contain control or bidirectional-formatting characters; "
        f"found {shown} at position 5"
    }


def test_update_basic_info_name_refuses_them_too() -> None:
    body = {"customer_id": CUSTOMER, "id": str(uuid.uuid4()), "name": "a\u202eb", "detail": "line 1\nline 2"}
    assert list(errors(body, UpdateBasicInfo)) == ["name"]


def test_names_keep_ordinary_unicode() -> None:
    name = "Ventes \u00e9t\u00e9 \u2014 \u05de\u05db\u05d9\u05e8\u05d5\u05ea \u200f\u65e5\u672c \U0001f4de"
    cmd = validated(create_body(name=name))
    assert cmd.name == name


@pytest.mark.parametrize("detail", ["line 1\nline 2\r\n\ttabbed", "bell \x07 and \u202e override"])
def test_detail_is_free_text_except_nul(detail: str) -> None:
    cmd = validated(create_body(detail=detail, source={**SOURCE, "detail": detail}))
    assert cmd.detail == detail and cmd.source.detail == detail
    assert errors(create_body(detail="a\x00b")) == {
        "detail": "detail must not contain the NUL character (\\u0000)"
    }
    assert errors(create_body(source={**SOURCE, "detail": "\x00"})) == {
        "source.detail": "source.detail must not contain the NUL character (\\u0000)"
    }


# --- properties -----------------------------------------------------------------------------

SEPARATORS = [" ", "-", ".", "/", "(", ")", "\u00a0", "\u2013", "\u2212", "\u3000", ""]
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


@st.composite
def spelled_example_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A region's example number (from libphonenumber's metadata), spelled with random separators."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(
        st.sampled_from([phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE])
    )
    number = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    assert number is not None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    country, national = str(number.country_code), e164[1 + len(str(number.country_code)) :]
    prefix = draw(st.sampled_from(["+", "00", "\uff0b", "(+"]))
    spelled = ("(+" + country + ")" if prefix == "(+" else prefix + country) + draw(
        st.sampled_from(SEPARATORS)
    )
    spelled += "".join(d + draw(st.sampled_from(SEPARATORS)) for d in national)
    ends = draw(st.sampled_from(["", " ", "\n", "\t", "\u00a0", "\r\n"]))
    return ends + spelled + ends, e164


def check_tel(given: str) -> None:
    try:
        stored = normalise_tel(given)
    except ValueError:
        return
    assert re.fullmatch(r"\+[1-9][0-9]{1,14}", stored), stored
    assert normalise_tel(stored) == stored
    assert phonenumbers.is_possible_number(phonenumbers.parse(stored))


@settings(max_examples=500, deadline=None)
@given(spelled_example_numbers())
def test_every_countrys_example_numbers_are_accepted_however_spaced(case: tuple[str, str]) -> None:
    given_, e164 = case
    assert normalise_tel(given_) == e164
    check_tel(given_)


tel_like = st.text(alphabet=string.digits + "+ -.()/x#\u00a0\uff10\uff0b\n\t" + WHITE_SPACE[:4], max_size=30)


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        tel_like, st.from_regex(r"(\+|00)[1-9][0-9 ().\-/]{3,20}", fullmatch=True), st.text(max_size=30)
    )
)
@example("+4910000000000000")  # libphonenumber allows Germany 15 national digits: 17 in all, past E.164's 15
def test_any_accepted_number_is_a_possible_e164_fixpoint(given_: str) -> None:
    check_tel(given_)


labels = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
users = st.text(alphabet=string.ascii_letters + string.digits + "-_.!~*'()&=+$,;?/%", min_size=1, max_size=20)
sip_like = st.builds(
    lambda scheme, user, host, top, port: f"{scheme}{user}@{'.'.join(host)}.{top}{port}",
    st.sampled_from(["", "sip:", "SIP:", "sips:"]),
    users,
    st.lists(labels, min_size=1, max_size=4),
    st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,5}", fullmatch=True),
    st.sampled_from(["", ":5060", ":0", ":65536", ":", ";transport=tcp"])
    | st.integers(0, 99999).map(lambda p: f":{p}"),
)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(sip_like, st.text(max_size=40), st.text(alphabet="ab@.:[]%1-\x07\u202e ", max_size=25)))
def test_any_accepted_sip_address_is_a_fixpoint(given_: str) -> None:
    try:
        stored = normalise_sip(given_)
    except ValueError:
        return
    assert normalise_sip(stored) == stored
    user, _, hostport = stored.partition("@")
    assert user and hostport == hostport.lower() and len(stored) <= 255
    assert not any(c in stored for c in "\x00\x07\u202e ;?" if c not in user)


# --- read models: stored values as stored ---------------------------------------------------

OLD_RULE_SOURCES = [
    {"type": "tel", "target": "+4402079460958", "target_name": "", "name": "", "detail": ""},
    {"type": "tel", "target": "+1234567", "target_name": "", "name": "line\nbreak", "detail": ""},
    {
        "type": "sip",
        "target": "alice@example..com:99999",
        "target_name": "\u202eevil",
        "name": "",
        "detail": "",
    },
]


def logged_under_old_rules(source: dict[str, Any]) -> bytes:
    """The outplan_created of an outplan with this source and a tab in its name."""
    return event_body("outplan_created", 1, name="old\tname", source=source)


@pytest.mark.parametrize("source", OLD_RULE_SOURCES, ids=[s["target"] for s in OLD_RULE_SOURCES])
def test_events_logged_under_the_old_rules_still_parse_and_project(source: dict[str, Any]) -> None:
    event = parse_event(logged_under_old_rules(source))
    assert event.data.source.model_dump() == source
    projection = Projection()
    assert projection.apply(event) is Applied.APPLIED
    assert projection.outplans[event.subject].source.target == source["target"]
    assert json.loads(event.model_dump_json())["data"]["source"] == source  # and re-serialise unchanged


def test_the_read_model_ignores_source_fields_added_later() -> None:
    source = {**OLD_RULE_SOURCES[0], "display": "later addition"}
    assert parse_event(logged_under_old_rules(source)).data.source.target == "+4402079460958"


def test_an_outplan_built_from_a_command_equals_the_same_outplan_read_back() -> None:
    cmd = validated(create_body(source={"type": "tel", "target": "+44 (0) 20 7946 0958"}))
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "customer_id": cmd.customer_id,
        "name": "",
        "detail": "",
        "dial_timeout": 30000,
        "try_interval": 60000,
        **{f"max_try_count_{i}": 0 for i in range(5)},
        "tm_create": "t",
        "tm_update": "t",
        "tm_delete": "t",
    }
    built = Outplan(source=cmd.source, **fields)
    read = Outplan.model_validate_json(built.model_dump_json())
    assert type(built.source) is StoredSource and built == read
    assert read.source.target == "+442079460958"
