"""Page tokens decode totally: any text is a position the list query can bind, or a 400."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from contracts.fields import unstorable
from tests.support.page_tokens import (
    FIRST_ID,
    OUT_OF_RANGE_TOKEN,
    TOKEN_LIKE,
    bare_times,
    near_tokens,
    token,
    well_formed,
)
from worker import paging
from worker.domain import PagePosition

pytestmark = pytest.mark.unit

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


any_text = st.text() | st.text(st.characters(codec="ascii")) | st.from_regex(TOKEN_LIKE)


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
@example(OUT_OF_RANGE_TOKEN)
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
        (OUT_OF_RANGE_TOKEN, "outside years 1 to 9999"),
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
