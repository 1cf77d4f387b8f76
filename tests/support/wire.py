"""Hypothesis strategies for what goes on the wire: stored outplans at the edges of every field.

The contract tests (``tests/unit/test_wire_replies.py``, ``tests/integration/test_wire_events.py``)
build the same values with the fast paths and with the ``contracts`` models and compare the bytes.
"""

from datetime import UTC, datetime
from typing import Final

from hypothesis import strategies as st

from contracts import Outplan, names
from contracts.fields import (
    DETAIL_MAX,
    DIAL_TIMEOUT_MAX,
    DIAL_TIMEOUT_MIN,
    MAX_TRY_COUNT_MAX,
    NAME_MAX,
    SHORT_MAX,
    TRY_INTERVAL_MAX,
    TRY_INTERVAL_MIN,
    StoredSource,
)
from contracts.timefmt import NOT_DELETED, format_time

# What JSON escapes or a hand-written encoder gets wrong: quotes, backslashes, the slash, HTML's
# specials, non-ASCII from two to four bytes in UTF-8 (emoji, the joiner of emoji sequences, the
# last code point), combining marks, a BOM, the JavaScript line terminators and a replacement character.
AWKWARD: Final = (
    '"',
    "\\",
    "/",
    "'",
    "<",
    ">",
    "&",
    "é",
    "ß",
    "Ω",
    "中",
    "☎",
    "😀",
    "👩",
    "\u200d",
    "\u0301",
    "\ufeff",
    "\u2028",
    "\u2029",
    "\ufffd",
    "\U0010ffff",
)
# Names show in dialer screens: no controls, no bidirectional formatting (``contracts.fields``).
_BIDI: Final = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
NAME_CHARS: Final = st.sampled_from(AWKWARD) | st.characters(
    exclude_categories=("Cc", "Cs"), exclude_characters=_BIDI
)
# Free text: anything but NUL and lone surrogates, so controls too (JSON escapes them).
DETAIL_CHARS: Final = (
    st.sampled_from(AWKWARD)
    | st.sampled_from("\t\n\r\x01\x08\x0c\x1b\x1f\x7f\x85\x9f" + _BIDI)
    | st.characters(codec="utf-8", exclude_characters="\x00")  # utf-8: no lone surrogates
)


def texts(chars: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[str]:
    """Short texts, the empty one, and texts of exactly ``max_size`` characters (a few repeated)."""
    return (
        st.text(chars, max_size=24)
        | st.just("")
        | st.text(chars, min_size=1, max_size=5).map(lambda s: (s * max_size)[:max_size])
    )


def bounded(low: int, high: int) -> st.SearchStrategy[int]:
    return st.sampled_from([low, high]) | st.integers(low, high)


# As stored (the read model takes them as stored): E.164, and one written under earlier rules.
tel_targets: Final = st.sampled_from(["+15559876543", "+4402079460958", "+1"]) | st.from_regex(
    r"\+[1-9][0-9]{0,14}", fullmatch=True
)
sip_targets: Final = st.sampled_from(
    [
        "alice@pbx.example.com:5060",
        "O'Neil.(x)&=+$,;?/%41@[2001:db8::1]:65535",
        "100@192.0.2.1",
        "u" * (SHORT_MAX - len("@example.com")) + "@example.com",
    ]
) | st.from_regex(
    r"[A-Za-z0-9_.!~*'()&=+$,;?/-]{1,16}@[a-z0-9]{1,10}(\.[a-z]{2,6}){1,2}(:[0-9]{1,5})?", fullmatch=True
)
stored_sources: Final = st.builds(
    StoredSource,
    type=st.just("tel"),
    target=tel_targets,
    target_name=texts(NAME_CHARS, SHORT_MAX),
    name=texts(NAME_CHARS, SHORT_MAX),
    detail=texts(DETAIL_CHARS, SHORT_MAX),
) | st.builds(
    StoredSource,
    type=st.just("sip"),
    target=sip_targets,
    target_name=texts(NAME_CHARS, SHORT_MAX),
    name=texts(NAME_CHARS, SHORT_MAX),
    detail=texts(DETAIL_CHARS, SHORT_MAX),
)

# Moments PostgreSQL and the tutorial's format both hold; whole seconds (no fraction) and the
# last microsecond are where renderers of the fraction differ. Not ``datetime.min`` or
# ``datetime.max``: asyncpg sends those as -infinity and infinity, and the clock never reads them.
_FIRST: Final = datetime(1, 1, 1, 0, 0, 1)
_LAST: Final = datetime(9999, 12, 31, 23, 59, 59)
moments: Final = (
    st.sampled_from(
        [
            datetime(2022, 4, 28, 1, 50, 23, 414000, tzinfo=UTC),
            datetime(2026, 1, 1, tzinfo=UTC),
            _FIRST.replace(tzinfo=UTC),
            datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            _LAST.replace(tzinfo=UTC),
        ]
    )
    | st.datetimes(min_value=_FIRST, max_value=_LAST, timezones=st.just(UTC))
    | st.datetimes(min_value=_FIRST, max_value=_LAST, timezones=st.just(UTC)).map(
        lambda moment: moment.replace(microsecond=0)
    )
)
# Deleted or not: ``NOT_DELETED`` is how "never" is stored on the wire.
deletions: Final = st.just(NOT_DELETED) | moments.map(format_time)

outplans: Final = st.builds(
    Outplan,
    id=st.uuids(),
    customer_id=st.uuids(),
    name=texts(NAME_CHARS, NAME_MAX),
    detail=texts(DETAIL_CHARS, DETAIL_MAX),
    source=stored_sources,
    dial_timeout=bounded(DIAL_TIMEOUT_MIN, DIAL_TIMEOUT_MAX),
    try_interval=bounded(TRY_INTERVAL_MIN, TRY_INTERVAL_MAX),
    max_try_count_0=bounded(0, MAX_TRY_COUNT_MAX),
    max_try_count_1=bounded(0, MAX_TRY_COUNT_MAX),
    max_try_count_2=bounded(0, MAX_TRY_COUNT_MAX),
    max_try_count_3=bounded(0, MAX_TRY_COUNT_MAX),
    max_try_count_4=bounded(0, MAX_TRY_COUNT_MAX),
    tm_create=moments.map(format_time),
    tm_update=moments.map(format_time),
    tm_delete=deletions,
)
event_types: Final = st.sampled_from(names.EVENT_TYPES)
