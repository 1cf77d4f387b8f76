"""Publish a message whose properties are exactly the bytes given, as a careless producer might.

AMQP clients encode only what is valid; these helpers splice raw bytes into a content header that
pamqp marshalled, and publish it beneath aio-pika.
"""

import struct
from typing import Any

from aio_pika.abc import AbstractChannel
from aiormq import spec


class RawProperties(spec.Basic.Properties):
    """Properties that marshal to ``raw``; ``message_id`` is only what aiormq sees for its confirms."""

    def __init__(self, raw: bytes, message_id: str) -> None:
        super().__init__(message_id=message_id)
        self.raw = raw

    def marshal(self) -> bytes:
        return self.raw


def replaced(old: bytes, new: bytes, *, short_string: bool, **properties: Any) -> RawProperties:
    """The marshalled ``properties`` with the one occurrence of ``old`` replaced by ``new``.

    With ``short_string`` the value's length byte, just before it, is set to ``new``'s length.
    """
    raw = spec.Basic.Properties(**properties).marshal()
    assert raw.count(old) == 1, "the placeholder must occur exactly once"
    at = raw.index(old)
    if short_string:
        assert raw[at - 1] == len(old) and len(new) <= 255
        raw = raw[: at - 1] + bytes([len(new)]) + new + raw[at + len(old) :]
    else:
        assert len(new) == len(old)
        raw = raw.replace(old, new)
    return RawProperties(raw, message_id=str(properties.get("message_id") or "raw"))


def with_headers(table: list[tuple[bytes, bytes]], **properties: Any) -> RawProperties:
    """``properties`` with ``headers`` replaced by a field table of these raw (key, typed value) pairs."""
    entries = b"".join(bytes([len(k)]) + k + v for k, v in table)
    raw_table = struct.pack(">I", len(entries)) + entries
    placeholder = spec.Basic.Properties(headers={"placeholder": "x"}, **properties)
    raw = placeholder.marshal()
    start = raw.index(b"placeholder") - 5  # the table's length, then the key's length byte
    end = start + 4 + struct.unpack(">I", raw[start : start + 4])[0]
    return RawProperties(
        raw[:start] + raw_table + raw[end:], message_id=str(properties.get("message_id") or "raw")
    )


def long_string(value: bytes) -> bytes:
    """A field-table long string ('S') of exactly these bytes, UTF-8 or not."""
    return b"S" + struct.pack(">I", len(value)) + value


def double(value: float) -> bytes:
    """A field-table double ('d')."""
    return b"d" + struct.pack(">d", value)


async def publish(
    channel: AbstractChannel, exchange: str, routing_key: str, body: bytes, properties: spec.Basic.Properties
) -> None:
    """Publish beneath aio-pika, so the raw properties reach the broker as they are; waits for the confirm."""
    underlay = await channel.get_underlay_channel()
    await underlay.basic_publish(body, exchange=exchange, routing_key=routing_key, properties=properties)
