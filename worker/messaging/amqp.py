"""Everything the worker does beneath aio-pika: the raw channel, subscribing and publishing on it.

aio-pika opens the connections and channels, restores them after a reconnect (``Robust*``) and
declares the topology; the hot paths run on the aiormq channel beneath (:data:`RawChannel`),
read through :func:`raw_channel`, the one place that asks aio-pika for it. Per message, aio-pika
would copy every property into a message object of its own and run each callback in a task of
its own; without them the worker's CPU per command at saturation fell by a sixth.

- :func:`publish` sends one message on prebuilt ``spec.Basic.Properties`` on a confirm-mode
  channel and says what the broker made of it (:class:`Confirm`): events, replies and
  dead-letter copies all go out through it.
- :class:`Delivery` is what settling a delivery needs of it: the channel it came on and its tag.

Rules from AMQP 0-9-1 (class ``basic``) and RabbitMQ's documentation, cited where they apply:
"Consumer Acknowledgements and Publisher Confirms" (https://www.rabbitmq.com/docs/confirms).
"""

import enum
from typing import Protocol, TypeAlias

import aiormq.abc
from aio_pika.abc import AbstractChannel
from aiormq import spec
from aiormq.exceptions import DeliveryError, PublishError

RawChannel: TypeAlias = aiormq.abc.AbstractChannel
"""The aiormq channel beneath an aio-pika channel: frames in and out, no per-message objects."""

RawDelivery: TypeAlias = aiormq.abc.DeliveredMessage
"""A message as aiormq parsed it from a ``basic.deliver`` (or a ``basic.return``) and its frames."""


async def raw_channel(channel: AbstractChannel) -> RawChannel:
    """The channel beneath ``channel`` as it is now; after a reconnect, the robust channel's new one.

    :raises aiormq.exceptions.ChannelInvalidStateError: ``channel`` is not open (one of
        ``TRANSIENT_ERRORS``).
    """
    return await channel.get_underlay_channel()


class Delivery(Protocol):
    """A delivery as acks and rejects need it (``Incoming`` is one).

    ``delivery_tag`` counts up from 1 on each channel and means something only on ``channel``
    (AMQP 0-9-1, ``basic.deliver``; RabbitMQ, "Consumer Acknowledgements and Publisher
    Confirms", https://www.rabbitmq.com/docs/confirms): a delivery is acked or rejected on the
    channel it came on, or not at all.
    """

    @property
    def delivery_tag(self) -> int | None: ...

    @property
    def channel(self) -> RawChannel: ...


# ---- publishing ------------------------------------------------------------------------------

PERSISTENT = 2
"""``delivery_mode`` of a message a durable queue keeps on disk (AMQP 0-9-1 basic properties)."""


class Confirm(enum.Enum):
    """What the broker made of one publish on a confirm-mode channel."""

    CONFIRMED = "confirmed"  # basic.ack: routed to at least one queue, and every such queue took it
    UNROUTED = "unrouted"  # mandatory, no binding matched: basic.return, then basic.ack
    REFUSED = "refused"  # basic.nack: a queue refused it (e.g. full with ``reject-publish``)


async def publish(
    channel: RawChannel,
    body: bytes,
    *,
    exchange: str,
    routing_key: str,
    properties: spec.Basic.Properties,
    mandatory: bool = False,
) -> Confirm:
    """Publish ``body`` with ``properties`` on ``channel`` (confirm mode); returns once the broker answered.

    RabbitMQ sends the ``basic.return`` of an unroutable ``mandatory`` message before its
    ``basic.ack`` ("Consumer Acknowledgements and Publisher Confirms"); aiormq answers it with
    the returned message, or raises ``PublishError`` when the channel was opened with
    ``on_return_raises``: both read ``UNROUTED``. Without ``mandatory`` an unroutable message is
    dropped and confirmed.

    :raises TRANSIENT_ERRORS: the link broke (``ChannelInvalidStateError``, ``ConnectionError``, ...).
    :raises TypeError, ValueError, OverflowError: pamqp could not encode a property.
    """
    try:
        answer = await channel.basic_publish(
            body, exchange=exchange, routing_key=routing_key, properties=properties, mandatory=mandatory
        )
    except PublishError:  # a DeliveryError too: the return comes first
        return Confirm.UNROUTED
    except DeliveryError:
        return Confirm.REFUSED
    return Confirm.UNROUTED if isinstance(answer, RawDelivery) else Confirm.CONFIRMED
