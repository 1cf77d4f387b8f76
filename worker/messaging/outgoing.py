"""Replies and dead-letter copies: what the consumer publishes about a command delivery.

This module holds what they carry; they go out through :func:`.amqp.publish`, on a
confirm-mode channel of a connection of their own (not the consumer's, not the relay's). A
publish the broker refuses (``basic.nack``) or that cannot be encoded raises
:class:`PublishRefused`; a broken link raises one of ``TRANSIENT_ERRORS``. The settlement policy
decides what follows (``settlement.decide``).

A dead-letter copy keeps the original body up to :data:`DEAD_LETTER_BODY_MAX` bytes (its full
size in ``x-original-body-size``), the original properties that could be read, the original
headers that can be encoded again within :data:`DEAD_LETTER_HEADERS_MAX` bytes (the names of
those left out in ``x-error-dropped-headers``), the exact bytes of the properties that could not
be read (``x-original-<name>``), and the reason in ``x-error-*`` headers. (aiormq gives a copy
without a ``message_id`` a random one: the original bytes are in ``x-original-message-id``.)
"""

from collections.abc import Mapping
from contextlib import nullcontext

from aio_pika.abc import AbstractChannel
from aiormq import spec
from pamqp import encode
from pamqp.common import FieldTable

from ..observability.spans import CommandTrace, Peer
from .amqp import PERSISTENT, Confirm, publish, raw_channel
from .incoming import Incoming

DEAD_LETTER_BODY_MAX = 64 * 1024  # bytes of the original body kept in a dead-letter copy
DEAD_LETTER_HEADERS_MAX = (
    64 * 1024
)  # bytes of original headers kept; a header frame must fit frame_max (128 KiB)
REPLY_CONTENT_TYPE = "application/json"


class PublishRefused(Exception):
    """The broker refused a reply or dead-letter copy, or it could not be encoded.

    ``reason`` is ``nacked`` or ``unencodable`` (the label of ``outplan_replies_failed_total``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Outgoing:
    """Publishes replies to ``reply_to`` and dead-letter copies to ``dead_letter_exchange``.

    ``channel`` is in confirm mode (``dead_letter_exchange`` keeps the exchange's name); each
    publish reads the channel beneath it anew, so a robust channel restored after a reconnect is
    used as soon as it is back.
    """

    def __init__(self, channel: AbstractChannel, dead_letter_exchange: str) -> None:
        self._channel = channel  # confirm mode
        self.dead_letter_exchange = dead_letter_exchange

    async def reply(
        self,
        message: Incoming,
        status_code: int,
        body: bytes,
        *,
        trace: CommandTrace | None = None,
        peer: Peer | None = None,
    ) -> None:
        """Send ``body`` to the message's ``reply_to`` (nothing when it has none); wait for the confirm.

        With the command's ``trace``, the reply carries its context (``traceparent``, ``tracestate``
        headers) and is published in a PRODUCER span (``peer``: the broker, for its attributes).

        :raises PublishRefused: nacked or unencodable. :raises TRANSIENT_ERRORS: the link broke.
        """
        if not message.reply_to:
            return
        headers: FieldTable = {"status_code": status_code}
        if trace is not None:
            headers.update(trace.headers())
        properties = spec.Basic.Properties(
            content_type=REPLY_CONTENT_TYPE,
            correlation_id=message.correlation_id or message.message_id,
            headers=headers,
        )
        with (
            nullcontext()
            if trace is None
            else trace.publishing_reply(message.reply_to, len(body), peer or Peer())
        ):
            await self._publish(body, "", message.reply_to, properties)

    async def dead_letter(
        self,
        message: Incoming,
        *,
        status: str,
        reason: str,
        text: str,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Publish a copy of the message with the reason to the dead-letter exchange; wait for the confirm.

        :raises PublishRefused: nacked or unencodable. :raises TRANSIENT_ERRORS: the link broke.
        """
        headers, dropped = encodable_headers(message.headers, DEAD_LETTER_HEADERS_MAX)
        headers.update(
            {
                "x-error-status": status,
                "x-error-reason": reason,
                "x-error-message": text[:1000],
                "x-original-exchange": message.exchange or "",
                "x-original-routing-key": message.routing_key or "",
            }
        )
        if dropped:
            headers["x-error-dropped-headers"] = ",".join(dropped)[:1000]
        if message.unreadable:
            headers["x-error-unreadable-properties"] = ",".join(message.unreadable)[:1000]
            headers.update(original_values(message.unreadable_raw))
        body = message.body
        if len(body) > DEAD_LETTER_BODY_MAX:
            headers["x-original-body-size"] = len(body)
            body = body[:DEAD_LETTER_BODY_MAX]
        headers.update(extra or {})
        properties = spec.Basic.Properties(
            # pamqp wants a FieldTable; these values were checked by encoding them (encodable_headers),
            # which their static type (object) cannot say.
            headers=headers,  # type: ignore[arg-type]
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            message_type=message.type,
            reply_to=message.reply_to,
            timestamp=message.timestamp,
            delivery_mode=PERSISTENT,
        )
        await self._publish(body, self.dead_letter_exchange, message.routing_key or "", properties)

    async def _publish(
        self, body: bytes, exchange: str, routing_key: str, properties: spec.Basic.Properties
    ) -> None:
        channel = await raw_channel(self._channel)
        try:
            confirm = await publish(
                channel, body, exchange=exchange, routing_key=routing_key, properties=properties
            )
        except (TypeError, ValueError, OverflowError) as exc:  # pamqp could not encode a property
            raise PublishRefused("unencodable", f"{type(exc).__name__}: {exc}") from exc
        if confirm is not Confirm.CONFIRMED:  # not mandatory: never returned, so refused
            raise PublishRefused("nacked", f"the broker refused the publish to {exchange or routing_key!r}")


def original_values(raw: Mapping[str, bytes]) -> dict[str, object]:
    """Headers that carry unreadable properties as sent: ``x-original-<name>`` (``message_id`` ->
    ``x-original-message-id``), a byte array of the exact bytes, or for a ``timestamp`` the
    64-bit number that was sent (seconds, or whatever the producer put there)."""
    values: dict[str, object] = {}
    for name, value in raw.items():
        key = "x-original-" + name.replace("_", "-")
        number = int.from_bytes(value, "big") if name == "timestamp" and len(value) == 8 else None
        # A field table's integers are signed 64-bit: a larger timestamp goes as its bytes.
        values[key] = number if number is not None and number < 2**63 else bytearray(value)
    return values


def encodable_headers(headers: Mapping[str, object], budget: int) -> tuple[dict[str, object], list[str]]:
    """The headers that can be encoded again, within ``budget`` bytes, and the names of the rest.

    Byte strings that were not UTF-8 (pamqp reads them as ``bytes``) go out as byte arrays;
    a value pamqp cannot encode (a double beyond a float's range: pamqp writes floats as 32-bit)
    is left out.
    """
    kept: dict[str, object] = {}
    dropped: list[str] = []
    used = 0
    for key, value in headers.items():
        value = _as_encodable(value)
        try:
            # Any value is tried: pamqp's FieldValue type lists what it encodes, and what it cannot
            # raises here and is dropped.
            size = len(key.encode()) + 1 + len(encode.encode_table_value(value))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - any encoding failure: the header cannot be carried
            dropped.append(key)
            continue
        if used + size > budget:
            dropped.append(key)
            continue
        used += size
        kept[key] = value
    return kept, dropped


def _as_encodable(value: object) -> object:
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, dict):
        return {k: _as_encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_encodable(v) for v in value]
    return value
