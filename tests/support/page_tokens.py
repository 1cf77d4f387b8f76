"""Page tokens as the service writes them, and strategies for the text a producer may send instead.

A token is ``o1.`` and the URL-safe base64, unpadded, of 24 bytes: the position's ``tm_create`` in
microseconds since 1970-01-01 UTC (8 bytes, signed), then the outplan id (16 bytes).
"""

import base64
import uuid

from hypothesis import strategies as st

#: The issue's token: a time far past year 9999.
OUT_OF_RANGE_TOKEN = "o1.f_________8AAAAAAAAAAAAAAAAAAAAB"
FIRST_ID = uuid.UUID(int=1)


def encoded(raw: bytes) -> str:
    """``raw`` written as a token is, whatever its length."""
    return "o1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def token(micros: int, outplan_id: uuid.UUID = FIRST_ID) -> str:
    """The token of this position."""
    return encoded(micros.to_bytes(8, "big", signed=True) + outplan_id.bytes)


#: Tokens of the right length, with any time (most of them out of range) and any id.
well_formed = st.builds(
    lambda micros, tail: encoded(micros.to_bytes(8, "big", signed=True) + tail),
    st.integers(-(2**63), 2**63 - 1),
    st.binary(min_size=16, max_size=16),
)
#: Tokens of any length.
near_tokens = st.builds(encoded, st.binary(max_size=40))
#: What a token looks like, base64 or not.
TOKEN_LIKE = r"o1\.[A-Za-z0-9_\-=+/]{0,40}"
#: Text that looks like a token and nothing else.
token_like = st.from_regex(TOKEN_LIKE, fullmatch=True)
#: The bare ``tm_create`` of earlier versions, with fields out of their ranges too.
bare_times = st.builds(
    "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}.{}".format,
    st.integers(0, 10_000),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.text("0123456789", max_size=8),
)
