"""Opaque list tokens: the (tm_create, id) of the last outplan on a page.

A token is ``o1.`` followed by unpadded URL-safe base64 of 24 bytes: tm_create as signed
big-endian microseconds since 1970-01-01 UTC (8 bytes), then the outplan id (16 bytes). The
tutorial's bare ``tm_create`` text (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC) is accepted as well.
"""

import base64
import binascii
from datetime import UTC, datetime, timedelta
from uuid import UUID

from contracts.timefmt import parse_time

from .domain import PagePosition

_PREFIX = "o1."
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RAW_LENGTH = 24
_RULE = "page_token is not a token this service returned (nor a tm_create 'YYYY-MM-DD HH:MM:SS.ffffff')"


class InvalidPageToken(ValueError):
    """The text is not a position in the list; the caller answers 400 naming ``page_token``."""


def to_micros(moment: datetime) -> int:
    """An aware datetime as microseconds since 1970-01-01 UTC."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Microseconds since 1970-01-01 UTC as an aware UTC datetime.

    Raises ``InvalidPageToken`` outside years 1 to 9999 (Python's datetime range, which
    PostgreSQL's timestamptz contains).
    """
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise InvalidPageToken(f"{_RULE}: its time is outside years 1 to 9999") from None


def encode(tm_create: datetime, outplan_id: UUID) -> str:
    """The token for the page after the outplan (``tm_create`` aware, as read from the row)."""
    raw = to_micros(tm_create).to_bytes(8, "big", signed=True) + outplan_id.bytes
    return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> PagePosition | None:
    """The position a page token names; ``None`` for ``""`` (the first page).

    Total over ``str``: any text gives either a position the list query can bind as it is
    (``tm_create`` an aware UTC datetime within years 1 to 9999) or raises ``InvalidPageToken``
    (a ``ValueError``) — bad base64, a wrong length, a time out of range, an unparsable
    ``tm_create``, NUL or any other character included.
    """
    if token == "":
        return None
    if token.startswith(_PREFIX):
        raw = _unbase64(token[len(_PREFIX) :])
        if len(raw) != _RAW_LENGTH:
            raise InvalidPageToken(_RULE)
        return PagePosition(from_micros(int.from_bytes(raw[:8], "big", signed=True)), UUID(bytes=raw[8:]))
    try:
        return PagePosition(parse_time(token), None)
    except ValueError:
        raise InvalidPageToken(_RULE) from None


def _unbase64(text: str) -> bytes:
    """Strict URL-safe base64, padding optional; ``b""`` for anything else."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return b""
