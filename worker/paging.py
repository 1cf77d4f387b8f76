"""Opaque list tokens: the (tm_create, id) of the last outplan on a page."""

import base64
import binascii
from datetime import UTC, datetime
from uuid import UUID

from contracts.timefmt import parse_time

from .domain import PagePosition

_PREFIX = "o1."
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidPageToken(ValueError):
    pass


def to_micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode(tm_create: datetime, outplan_id: UUID) -> str:
    raw = to_micros(tm_create).to_bytes(8, "big", signed=True) + outplan_id.bytes
    return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> PagePosition | None:
    """``""`` is the first page; a bare tutorial ``tm_create`` is accepted as well."""
    if token == "":
        return None
    if token.startswith(_PREFIX):
        text = token[len(_PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 24:
            return PagePosition(int.from_bytes(raw[:8], "big", signed=True), UUID(bytes=raw[8:]))
    else:
        try:
            return PagePosition(to_micros(parse_time(token)), None)
        except ValueError:
            pass
    raise InvalidPageToken(
        "page_token is not a token this service returned (nor a tm_create 'YYYY-MM-DD HH:MM:SS.ffffff')"
    )
