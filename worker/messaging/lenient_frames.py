"""Read a content header whose properties cannot all be decoded, instead of closing the connection.

Why this exists: pamqp, beneath aiormq, decodes every frame in the connection's reader. A
property it cannot decode (a ``message_id`` that is not UTF-8, a ``timestamp`` out of
``datetime``'s range, a header key that is not UTF-8, a header of an unknown type) raises there,
aiormq closes the whole connection, and the broker delivers the same message first again on the
next one: one producer's odd bytes stop the service for everybody until the queue's delivery
limit drops the message with no reason given.

``install()`` wraps pamqp's content-header decoding (``pamqp.frame._unmarshal_header_frame``, a
module function that ``pamqp.frame.unmarshal`` looks up on every call). When the strict decoding
succeeds (every ordinary message) nothing changes and nothing is added to its cost. When it
fails, the header is decoded again property by property: each property's size is known from the
frame itself (a length prefix or a fixed width), so a property that cannot be decoded is left
out (``None``) and noted in :attr:`LenientContentHeader.unreadable`; a header entry that cannot
be decoded is left out of ``headers`` and noted as ``headers[<key>]``. The consumer answers such
a delivery 400 ``INVALID_PROPERTIES`` and dead-letters it with the reason
(``worker.requests.decode``). Only content headers are decoded leniently: method frames carry
names the broker checked (exchanges, queues, our own consumer tag) or the broker's own text.

Written here rather than taken from a library because no AMQP client offers lenient decoding;
the hook point is checked by ``install()`` and by ``tests/unit/test_lenient_frames.py`` against
the pinned pamqp, so an upgrade that moves it fails loudly instead of silently losing this.
"""

import struct
from collections.abc import Callable

import pamqp.frame
from pamqp import commands, decode
from pamqp.exceptions import UnmarshalingException
from pamqp.header import ContentHeader

_Decoder = Callable[[bytes], ContentHeader]
_HOOK = "_unmarshal_header_frame"
_ORIGINAL: _Decoder | None = None


class LenientContentHeader(ContentHeader):
    """A content header some of whose properties could not be decoded.

    ``unreadable`` maps a property name (``message_id``, ``timestamp``, ``headers[x-key]``,
    ``headers``) to why it could not be read, with the raw bytes where they help (at most 32,
    in hex); it reads after "<name> is". ``raw`` holds the exact bytes of each unreadable
    property other than ``headers`` (a short string without its length byte; a timestamp's 8
    bytes), so that a dead-letter copy can carry them. The unreadable properties themselves are
    ``None`` (or absent from ``headers``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.unreadable: dict[str, str] = {}
        self.raw: dict[str, bytes] = {}


def install() -> None:
    """Decode content headers leniently from now on, in this process (idempotent).

    :raises RuntimeError: when pamqp no longer has the function this wraps (a pamqp upgrade
        moved it: the lenient decoding must be ported before the upgrade is taken).
    """
    global _ORIGINAL
    if _ORIGINAL is not None:
        return
    original = getattr(pamqp.frame, _HOOK, None)
    if original is None:
        raise RuntimeError(
            f"pamqp.frame.{_HOOK} is gone: port worker/messaging/lenient_frames.py to this pamqp"
        )
    _ORIGINAL = original
    setattr(pamqp.frame, _HOOK, _unmarshal_header_frame)


def _unmarshal_header_frame(frame_data: bytes) -> ContentHeader:
    assert _ORIGINAL is not None
    try:
        return _ORIGINAL(frame_data)
    except Exception:  # noqa: BLE001 - pamqp lets OverflowError and OSError (a timestamp) through too
        pass  # below: the same frame, property by property
    try:
        return unmarshal_leniently(frame_data)
    except (
        struct.error,
        ValueError,
        IndexError,
    ) as exc:  # the frame itself is cut short: a real framing error
        raise UnmarshalingException("ContentHeader", exc) from exc


def unmarshal_leniently(frame_data: bytes) -> LenientContentHeader:
    """Decode a content header frame's payload, leaving out what cannot be decoded.

    :param frame_data: the frame's payload (class id, weight, body size, flags, properties).
    :raises struct.error, ValueError, IndexError: when the frame is shorter than its own lengths
        say; the caller reports that as a framing error, as pamqp does.
    """
    header = LenientContentHeader()
    header.class_id, header.weight, header.body_size = struct.unpack(">HHQ", frame_data[0:12])
    flags, offset = _flags(frame_data, 12)
    data = memoryview(frame_data)[offset:]
    properties = header.properties
    for name in properties.__slots__:
        if not flags & properties.flags[name]:
            continue
        data_type: str = getattr(commands.Basic.Properties, "_" + name)
        size = _size(data, data_type)
        if size > len(data):
            raise ValueError(f"the {name} property runs past the end of the frame")
        raw = bytes(data[:size])
        if data_type == "table":
            value: object = _table(raw, header.unreadable)
        else:
            try:
                _, value = decode.by_type(raw, data_type)
            except Exception as exc:  # noqa: BLE001 - any decoding failure: this property is unreadable
                header.raw[name] = raw[1:] if data_type == "shortstr" else raw
                header.unreadable[name] = _why(exc, header.raw[name])
                value = None
        setattr(properties, name, value)
        data = data[size:]
    return header


def _flags(data: bytes, offset: int) -> tuple[int, int]:
    """The property flags (continued in 16-bit words while bit 0 is set) and where properties start."""
    flags, shift = 0, 0
    while True:
        (word,) = struct.unpack_from(">H", data, offset)
        offset += 2
        flags |= word << shift
        shift += 16
        if not word & 1:
            return flags, offset


_FIXED = {"octet": 1, "short": 2, "long": 4, "longlong": 8, "timestamp": 8}


def _size(data: memoryview, data_type: str) -> int:
    """Bytes a property of this type takes, read from its length prefix or its fixed width."""
    if data_type == "shortstr":
        return 1 + data[0]
    if data_type in ("longstr", "table"):
        return 4 + int.from_bytes(data[0:4], "big")
    return _FIXED[data_type]


def _table(raw: bytes, unreadable: dict[str, str]) -> dict[str, object]:
    """A field table's readable entries; each unreadable one noted as ``headers[<key>]``."""
    end = 4 + int.from_bytes(raw[0:4], "big")
    table: dict[str, object] = {}
    offset = 4
    while offset < end:
        key_size = raw[offset]
        key_bytes = raw[offset + 1 : offset + 1 + key_size]
        offset += 1 + key_size
        key: str | None
        try:
            key = key_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            key = None
            unreadable[f"headers[{key_bytes.decode('utf-8', 'backslashreplace')}]"] = _why(exc, key_bytes)
        size = _value_size(raw, offset, end)
        if size is None:  # a type this decoder does not know: the rest cannot be found
            unreadable["headers" if key is None else f"headers[{key}]"] = (
                f"unknown field type {raw[offset : offset + 1]!r}; this and the later headers were dropped"
            )
            return table
        value_bytes = raw[offset : offset + size]
        offset += size
        if key is None:
            continue
        try:
            _, table[key] = decode.embedded_value(value_bytes)
        except Exception as exc:  # noqa: BLE001 - this entry cannot be read; the others can
            unreadable[f"headers[{key}]"] = _why(exc, value_bytes[1:])
    return table


_VALUE_FIXED = {
    b"t": 1,
    b"b": 1,
    b"B": 1,
    b"s": 2,
    b"u": 2,
    b"I": 4,
    b"i": 4,
    b"l": 8,
    b"L": 8,
    b"f": 4,
    b"d": 8,
    b"D": 5,
    b"T": 8,
    b"V": 0,
}
_VALUE_PREFIXED = (b"S", b"A", b"F", b"x")


def _value_size(raw: bytes, offset: int, end: int) -> int | None:
    """Bytes a field value takes, its type byte included; None for a type of unknown size."""
    kind = raw[offset : offset + 1]
    if kind in _VALUE_FIXED:
        size = 1 + _VALUE_FIXED[kind]
    elif kind in _VALUE_PREFIXED:
        size = 5 + int.from_bytes(raw[offset + 1 : offset + 5], "big")
    else:
        return None
    return size if offset + size <= end else None


def _why(exc: BaseException, raw: bytes) -> str:
    """Why a value could not be read, to follow "<name> is", with (at most 32 of) its bytes in hex."""
    shown = raw[:32].hex(" ") + (" …" if len(raw) > 32 else "")
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 (bytes {shown})"
    return f"not decodable: {type(exc).__name__}: {exc} (bytes {shown})"
