"""Page tokens decode totally: any text is a position the list query can bind, or a 400."""

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from contracts.fields import unstorable
from worker import paging
from worker.domain import PagePosition

pytestmark = pytest.mark.unit

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


FIRST_ID = uuid.UUID(int=1)


def token(micros: int, outplan_id: uuid.UUID = FIRST_ID) -> str:
    raw = micros.to_bytes(8, "big", signed=True) + outplan_id.bytes
    return "o1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


well_formed = st.builds(
    lambda micros, tail: "o1." + _b64(micros.to_bytes(8, "big", signed=True) + tail),
    st.integers(-(2**63), 2**63 - 1),
    st.binary(min_size=16, max_size=16),
)
near_tokens = st.builds(lambda raw: "o1." + _b64(raw), st.binary(max_size=40))
bare_times = st.builds(
    "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}.{}".format,
    st.integers(0, 10_000),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.text("0123456789", min_size=0, max_size=8),
)
any_text = st.text() | st.text(st.characters(codec="ascii")) | st.from_regex(r"o1\.[A-Za-z0-9_\-=+/]{0,40}")


def assert_bindable(position: PagePosition | None) -> None:
    """What the list query binds: an aware UTC datetime that asyncpg can send as timestamptz."""
    if position is None:
        return
    moment = position.tm_create
    assert type(moment) is datetime and moment.utcoffset() == timedelta(0)
    assert EARLIEST <= moment <= LATEST
    moment.astimezone(UTC) - datetime(2000, 1, 1, tzinfo=UTC)  # what the driver computes; must not raise
    assert position.id is None or isinstance(position.id, uuid.UUID)


@given(any_text | well_formed | near_tokens | bare_times)
@example("o1.f_________8AAAAAAAAAAAAAAAAAAAAB")  # the token: a time far past year 9999
@example(token(-(2**63)))
@example("o1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00")
@example("o1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAé")
@example("0000-01-01 00:00:00.000000")
@example("٢٠٢٢-04-28 01:50:23.414000")  # Arabic-Indic digits: strptime reads them as a year
@example("2022-04-28 01:50:23.414000\x00")
def test_any_text_is_a_bindable_position_or_an_invalid_token(text: str) -> None:
    try:
        position = paging.decode(text)
    except paging.InvalidPageToken as exc:
        assert str(exc).startswith("page_token ")  # names the field: it becomes the 400's message
        return
    assert_bindable(position)


@given(st.datetimes(timezones=st.just(UTC)), st.uuids())
def test_tokens_the_service_encodes_round_trip(moment: datetime, outplan_id: uuid.UUID) -> None:
    text = paging.encode(moment, outplan_id)
    assert text.isascii() and unstorable(text) is None
    assert paging.decode(text) == PagePosition(moment, outplan_id)


@pytest.mark.parametrize("moment", [EARLIEST, LATEST])
def test_the_extreme_moments_round_trip(moment: datetime) -> None:
    assert paging.decode(token(paging.to_micros(moment))) == PagePosition(moment, FIRST_ID)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("o1.f_________8AAAAAAAAAAAAAAAAAAAAB", "outside years 1 to 9999"),
        (token(paging.to_micros(LATEST) + 1), "outside years 1 to 9999"),
        (token(paging.to_micros(EARLIEST) - 1), "outside years 1 to 9999"),
        ("o1.AAAA", "not a token this service returned"),  # wrong length
        ("o1." + "A" * 31 + "*", "not a token this service returned"),  # not base64
        ("o1." + "A" * 31 + "é", "not a token this service returned"),
        ("o1." + "A" * 32 + "\x00", "not a token this service returned"),
        ("10000-01-01 00:00:00.000000", "not a token this service returned"),
        ("0000-01-01 00:00:00.000000", "not a token this service returned"),
        ("2022-02-30 00:00:00.000000", "not a token this service returned"),
        ("yesterday", "not a token this service returned"),
    ],
)
def test_invalid_tokens_say_why(text: str, why: str) -> None:
    with pytest.raises(paging.InvalidPageToken, match=why):
        paging.decode(text)
