"""Arbitrary AMQP 0-9-1 property and header values, and a publisher that sends them byte for byte.

pika encodes ``bytes`` short strings (``message_id``, header keys, ...) as they are, so they may
be any octets, UTF-8 or not, and an ``int`` timestamp as the 64-bit number it is. For field
types pika does not produce (doubles, floats, a long string that is not UTF-8, odd integer
widths) a value may be a ``Raw``: its type tag and payload go on the wire unchanged.

``unreadable(props)`` says whether a receiver that insists on UTF-8 short strings and on
timestamps within ``datetime``'s range cannot read a generated set of properties: those are the
deliveries to be answered ``INVALID_PROPERTIES``.
"""

import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pika
import pika.data
from hypothesis import strategies as st

from tests.conftest import AMQP_URL


@dataclass(frozen=True)
class Raw:
    """A table field value as sent: a one-byte type tag, then its payload (length prefix included)."""

    tag: bytes
    payload: bytes


def double(value: float) -> Raw:
    return Raw(b"d", struct.pack(">d", value))


def single(value: float) -> Raw:
    return Raw(b"f", struct.pack(">f", value))


def long_string(data: bytes) -> Raw:
    """A long string ``S`` of any octets (pika would send ``bytes`` as a byte array ``x``)."""
    return Raw(b"S", struct.pack(">I", len(data)) + data)


def timestamp(value: int) -> Raw:
    return Raw(b"T", struct.pack(">Q", value))


_pika_encode_value = pika.data.encode_value


def _encode_value(pieces: list[bytes], value: Any) -> int:
    if isinstance(value, Raw):
        pieces.append(value.tag + value.payload)
        return len(value.tag) + len(value.payload)
    return int(_pika_encode_value(pieces, value))


pika.data.encode_value = _encode_value  # encode_table and arrays look the name up at each call


# ---- strategies -----------------------------------------------------------------------------


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fits_short(value: str | bytes) -> bool:
    return len(value if isinstance(value, bytes) else value.encode()) <= 255


#: Text that can be encoded (no surrogates), NUL and other controls included.
texts = st.text(st.characters(codec="utf-8"), max_size=40)
not_utf8 = st.sampled_from([b"\xc3(bad", b"\xff", b"\xed\xa0\x80", b"ok\x80", b"\xc0\xaf"]) | st.binary(
    min_size=1, max_size=40
).filter(lambda b: not _decodes(b))
#: A short string property: text, NUL-bearing text, or octets that are not UTF-8.
short_strings = (texts | st.sampled_from(["", "abc\x00def", "\x00", "x" * 255, "é" * 127]) | not_utf8).filter(
    _fits_short
)
timestamps = st.sampled_from(
    [
        0,
        1,
        2**31 - 1,
        2**32 - 1,
        2**32,
        1_764_470_000,
        1_764_470_000_000,
        1_764_470_000_000_000,
        253_402_300_799,
        253_402_300_800,
        253_402_300_799_999,
        253_402_300_800_000,
        2**63 - 1,
        2**63,
        2**64 - 1,
    ]
) | st.integers(0, 2**64 - 1)
scalars = st.one_of(
    texts,
    st.binary(max_size=40),
    st.booleans(),
    st.none(),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1),
    # Finite only: RabbitMQ closes the publisher's connection (541 INTERNAL_ERROR) on a NaN or an
    # infinity, so such a message never reaches a consumer.
    st.floats(allow_nan=False, allow_infinity=False).map(double),
    st.sampled_from([1e300, -1e300, 1.7976931348623157e308, 5e-324]).map(double),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(single),
    st.binary(max_size=300).map(long_string),
    not_utf8.map(long_string),
    timestamps.map(timestamp),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6).map(
        Decimal
    ),
    st.builds(Raw, st.sampled_from([b"b", b"B"]), st.binary(min_size=1, max_size=1)),
    st.builds(Raw, st.sampled_from([b"s", b"u"]), st.binary(min_size=2, max_size=2)),
    st.builds(Raw, st.sampled_from([b"i", b"I"]), st.binary(min_size=4, max_size=4)),
    st.builds(Raw, st.sampled_from([b"l", b"L"]), st.binary(min_size=8, max_size=8)),
    st.builds(Raw, st.just(b"D"), st.binary(min_size=5, max_size=5)),  # any scale, any digits
)
header_keys = (
    texts | not_utf8 | st.sampled_from(["x-delivery-count", "x-death", "x-error-reason", ""])
).filter(_fits_short)
#: Header tables of every field type, nested tables and arrays included.
headers = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(header_keys, inner, max_size=4),
    max_leaves=12,
).flatmap(
    lambda value: (
        st.just(value)
        if isinstance(value, dict)
        else st.dictionaries(header_keys, st.just(value), min_size=1, max_size=1)
    )
)


#: The last second a ``datetime`` holds: 9999-12-31T23:59:59Z.
_LAST_SECOND = 253_402_300_799


def readable_timestamp(value: int) -> bool:
    """Whether a receiver reads this 64-bit timestamp as a ``datetime``.

    AMQP 0-9-1 says seconds since the epoch; pamqp 4.0 (``pamqp.decode.timestamp``) reads a value
    over 2**32 - 1 as milliseconds ("anything above the year 2106 is likely milliseconds"), so a
    value is readable when that reading falls within ``datetime``'s years 1 to 9999.
    """
    seconds = value / 1000 if value > 0xFFFFFFFF else value
    return seconds < _LAST_SECOND + 1


def _unreadable_table(table: dict[Any, Any]) -> bool:
    return any((isinstance(k, bytes) and not _decodes(k)) or _unreadable_value(v) for k, v in table.items())


def _unreadable_value(value: Any) -> bool:
    if isinstance(value, dict):
        return _unreadable_table(value)
    if isinstance(value, list):
        return any(_unreadable_value(v) for v in value)
    if isinstance(value, Raw) and value.tag == b"T":
        return not readable_timestamp(struct.unpack(">Q", value.payload)[0])
    return False


def unreadable(props: dict[str, Any]) -> str | None:
    """The first property a receiver cannot read, else None.

    Unreadable: a short string that is not UTF-8 (header keys included) and a timestamp, as the
    property or in the headers, that is not a ``datetime`` (:func:`readable_timestamp`).
    """
    for name, value in props.items():
        if isinstance(value, bytes) and not _decodes(value):
            return name
        if name == "timestamp" and not readable_timestamp(value):
            return name
        if name == "headers" and value and _unreadable_table(value):
            return "headers"
    return None


# ---- publishing -------------------------------------------------------------------------------


@dataclass
class Answered:
    """The replies one message got, in arrival order (each a ``(properties, body)``)."""

    replies: list[tuple[pika.BasicProperties, bytes]] = field(default_factory=list)


class RawPublisher:
    """A blocking pika connection that sends exactly the given properties and counts the replies."""

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self.connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.channel = self.connection.channel()
        self.sent: Counter[str] = Counter()

    def send(
        self, routing_key: str, body: bytes, *, wait: float = 10.0, linger: float = 0.2, **props: Any
    ) -> Answered:
        """Publish to the exchange; collect replies until ``linger`` s after the first (or ``wait`` s)."""
        reply_to = self.channel.queue_declare("", exclusive=True).method.queue
        properties = pika.BasicProperties(reply_to=reply_to, **props)
        self.channel.basic_publish(self.exchange, routing_key, body, properties)
        self.sent[routing_key] += 1
        answered = Answered()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            method, reply_props, reply_body = self.channel.basic_get(reply_to, auto_ack=True)
            if method is not None:
                assert reply_props is not None and reply_body is not None  # both come with a message
                answered.replies.append((reply_props, reply_body))
                if len(answered.replies) == 1:  # a second reply would be a second delivery
                    deadline = min(deadline, time.monotonic() + linger)
                continue
            self.connection.sleep(0.01)
        self.channel.queue_delete(reply_to)
        return answered

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()
