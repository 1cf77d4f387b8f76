"""Everything the worker does beneath aio-pika: the raw channel, subscribing and publishing on it.

aio-pika opens the connections and channels, restores them after a reconnect (``Robust*``) and
declares the topology; the hot paths run on the aiormq channel beneath (:data:`RawChannel`),
read through :func:`raw_channel`, the one place that asks aio-pika for it. Per message, aio-pika
would copy every property into a message object of its own and run each callback in a task of
its own; without them the worker's CPU per command at saturation fell by a sixth.

:class:`Delivery` is what settling a delivery needs of it: the channel it came on and its tag.
"""

from typing import Protocol, TypeAlias

import aiormq.abc
from aio_pika.abc import AbstractChannel

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
