"""A command delivery as the consumer reads it, straight from the frames aiormq parsed.

aio-pika's ``IncomingMessage`` copies and converts every property on arrival (37 µs on the
development machine), and aio-pika runs each consumer callback in a task of its own on top of
aiormq's. Without them the worker's CPU per command at saturation fell by a sixth. The consumer
needs a dozen fields, read where they lie, and one way to give a message back.

Properties that could not be decoded (``lenient_frames``) read as ``None`` and are listed in
``unreadable`` with the reason for each.
"""

from datetime import datetime
from typing import Any

from .amqp import RawChannel, RawDelivery
from .lenient_frames import LenientContentHeader


class Incoming:
    """Reads as aio-pika's message did, an empty string property included: it means none.

    A :class:`~.amqp.Delivery`: acks and rejects go back on ``channel`` with ``delivery_tag``.
    """

    __slots__ = ("_delivered", "_properties", "body", "channel", "delivery_tag")

    def __init__(self, delivered: RawDelivery) -> None:
        self._delivered = delivered
        self._properties = delivered.header.properties
        self.body: bytes = delivered.body
        self.channel: RawChannel = delivered.channel  # acks go back on the channel it came on
        self.delivery_tag: int | None = delivered.delivery_tag

    @property
    def unreadable(self) -> dict[str, str]:
        """Properties that could not be decoded (``message_id``, ``headers[x-key]``, ...) and why."""
        header = self._delivered.header
        return header.unreadable if isinstance(header, LenientContentHeader) else {}

    @property
    def unreadable_raw(self) -> dict[str, bytes]:
        """The exact bytes of each unreadable property other than ``headers`` (see ``unreadable``)."""
        header = self._delivered.header
        return header.raw if isinstance(header, LenientContentHeader) else {}

    @property
    def redelivered(self) -> bool:
        """The broker delivered this message before (to this consumer or another)."""
        return bool(self._delivered.redelivered)

    @property
    def routing_key(self) -> str | None:
        """The routing key it was published with (``basic.deliver``)."""
        return self._delivered.routing_key

    @property
    def exchange(self) -> str | None:
        """The exchange it was published to; ``""`` is the default exchange."""
        return self._delivered.exchange

    @property
    def content_type(self) -> str | None:
        """The ``content-type`` property as sent (the contract wants ``application/json``), or None."""
        return self._properties.content_type

    @property
    def content_encoding(self) -> str | None:
        """The ``content-encoding`` property as sent (only none or ``identity`` is accepted), or None."""
        return self._properties.content_encoding

    @property
    def type(self) -> str | None:
        """The ``type`` property (a command name, when the producer sets it); None when absent or empty."""
        return self._properties.message_type or None

    @property
    def message_id(self) -> str | None:
        """The ``message-id`` property: the producer's idempotency key; None when absent or empty."""
        return self._properties.message_id or None

    @property
    def correlation_id(self) -> str | None:
        """The ``correlation-id`` property, copied into the reply; None when absent or empty."""
        return self._properties.correlation_id or None

    @property
    def reply_to(self) -> str | None:
        """The ``reply-to`` property: the queue the reply goes to; None when absent or empty."""
        return self._properties.reply_to or None

    @property
    def timestamp(self) -> datetime | None:
        """The ``timestamp`` property (seconds since the epoch, read as an aware datetime), or None."""
        return self._properties.timestamp

    @property
    def headers(self) -> dict[str, Any]:
        """The application headers that could be decoded (``unreadable`` names the others)."""
        return self._properties.headers or {}

    async def reject(self, *, requeue: bool) -> None:
        """``basic.reject`` this delivery on its channel (AMQP 0-9-1); ``requeue`` puts it back on the queue.

        :raises TRANSIENT_ERRORS: the channel is gone (the broker requeues its deliveries itself).
        """
        await self.channel.basic_reject(self.delivery_tag or 0, requeue=requeue)
