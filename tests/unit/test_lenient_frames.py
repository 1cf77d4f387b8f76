"""Content headers with properties that cannot be decoded: read, noted, never a framing error.

Frames go through ``pamqp.frame.unmarshal``, the function aiormq's frame reader calls, so these
tests hold the hook point to the pamqp version that is installed.
"""

import datetime
import struct
from typing import Any

import pamqp.frame
import pytest
from pamqp import commands, constants
from pamqp.exceptions import UnmarshalingException
from pamqp.header import ContentHeader

from worker.messaging import lenient_frames
from worker.messaging.lenient_frames import LenientContentHeader

pytestmark = pytest.mark.unit

NOT_UTF8 = b"\xc3(bad"


@pytest.fixture(autouse=True)
def installed() -> None:
    lenient_frames.install()


def frame(payload: bytes, channel: int = 1) -> bytes:
    return (
        struct.pack(">BHI", constants.FRAME_HEADER, channel, len(payload))
        + payload
        + constants.FRAME_END_CHAR
    )


def header_payload(**properties: Any) -> bytes:
    return ContentHeader(body_size=7, properties=commands.Basic.Properties(**properties)).marshal()


def unmarshal(payload: bytes) -> ContentHeader:
    _, channel, decoded = pamqp.frame.unmarshal(frame(payload))
    assert channel == 1
    assert isinstance(decoded, ContentHeader)
    return decoded


def table(*entries: tuple[bytes, bytes]) -> bytes:
    """A field table from raw (key, typed value) pairs, exactly as given."""
    body = b"".join(bytes([len(k)]) + k + v for k, v in entries)
    return struct.pack(">I", len(body)) + body


def test_an_ordinary_header_is_decoded_by_pamqp_itself() -> None:
    decoded = unmarshal(header_payload(message_id="abc", content_type="application/json", headers={"a": 1}))
    assert type(decoded) is ContentHeader
    assert (decoded.properties.message_id, decoded.properties.headers) == ("abc", {"a": 1})


def test_a_message_id_that_is_not_utf8_is_left_out_and_named() -> None:
    payload = header_payload(message_id="XXXXX", correlation_id="c-1", reply_to="amq.rabbitmq.reply-to.x")
    decoded = unmarshal(payload.replace(b"XXXXX", NOT_UTF8))
    assert isinstance(decoded, LenientContentHeader)
    assert decoded.properties.message_id is None
    assert decoded.unreadable == {"message_id": "not UTF-8 (bytes c3 28 62 61 64)"}
    assert decoded.raw == {"message_id": NOT_UTF8}  # exactly as sent, for the dead-letter copy
    # the properties after it are read as usual
    assert (decoded.properties.correlation_id, decoded.properties.reply_to) == (
        "c-1",
        "amq.rabbitmq.reply-to.x",
    )
    assert decoded.body_size == 7


@pytest.mark.parametrize("seconds", [1_764_470_000_000_000, 2**63 - 1, 2**64 - 1])
def test_a_timestamp_out_of_range_is_left_out_and_named(seconds: int) -> None:
    moment = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    payload = header_payload(timestamp=moment, message_id="m-1", message_type="outplan.create")
    good = struct.pack(">Q", int(moment.timestamp()))
    assert payload.count(good) == 1
    decoded = unmarshal(payload.replace(good, struct.pack(">Q", seconds)))
    assert isinstance(decoded, LenientContentHeader)
    assert decoded.properties.timestamp is None
    assert set(decoded.unreadable) == {"timestamp"}
    assert decoded.raw == {"timestamp": struct.pack(">Q", seconds)}
    assert decoded.unreadable["timestamp"].startswith("not decodable: ")
    assert (decoded.properties.message_id, decoded.properties.message_type) == ("m-1", "outplan.create")


def test_unreadable_header_entries_are_dropped_one_by_one() -> None:
    headers = table(
        (b"good", b"S" + struct.pack(">I", 2) + b"ok"),
        (NOT_UTF8, b"I" + struct.pack(">i", 5)),  # a key that is not UTF-8
        (b"when", b"T" + struct.pack(">Q", 2**64 - 1)),  # a timestamp out of range
        (b"after", b"t\x01"),
    )
    payload = header_payload(message_id="m-2", headers={"placeholder": "x"}, app_id="tests")
    start = payload.index(b"placeholder") - 5  # the table's length prefix, then the key's length
    end = start + 4 + struct.unpack(">I", payload[start : start + 4])[0]
    decoded = unmarshal(payload[:start] + headers + payload[end:])
    assert isinstance(decoded, LenientContentHeader)
    assert decoded.properties.headers == {"good": "ok", "after": True}
    assert set(decoded.unreadable) == {"headers[\\xc3(bad]", "headers[when]"}
    assert (decoded.properties.message_id, decoded.properties.app_id) == ("m-2", "tests")


def test_a_header_of_unknown_type_drops_it_and_the_rest_of_the_table_only() -> None:
    headers = table((b"first", b"t\x00"), (b"odd", b"Z\x00\x00"), (b"lost", b"t\x01"))
    payload = header_payload(headers={"placeholder": "x"}, app_id="tests")
    start = payload.index(b"placeholder") - 5
    end = start + 4 + struct.unpack(">I", payload[start : start + 4])[0]
    decoded = unmarshal(payload[:start] + headers + payload[end:])
    assert isinstance(decoded, LenientContentHeader)
    assert decoded.properties.headers == {"first": False}
    assert "headers[odd]" in decoded.unreadable
    assert decoded.properties.app_id == "tests"  # the table's own length still finds what follows


def test_a_header_cut_short_is_still_a_framing_error() -> None:
    payload = header_payload(message_id="XXXXX")
    with pytest.raises(UnmarshalingException):
        pamqp.frame.unmarshal(frame(payload.replace(b"XXXXX", NOT_UTF8)[:-3]))


def test_install_is_idempotent_and_checks_its_hook_point() -> None:
    lenient_frames.install()  # again: the fixture installed it already
    lenient_frames.install()
    # Installed once, through the function pamqp.frame.unmarshal calls: pamqp still decodes an
    # ordinary header itself (a second wrapping would recurse into the lenient path) ...
    ordinary = unmarshal(header_payload(message_id="abc"))
    assert type(ordinary) is ContentHeader and ordinary.properties.message_id == "abc"
    # ... and a header it cannot decode is read leniently instead of breaking the frame.
    odd = unmarshal(header_payload(message_id="XXXXX").replace(b"XXXXX", NOT_UTF8))
    assert isinstance(odd, LenientContentHeader) and set(odd.unreadable) == {"message_id"}
