"""Everything the worker does beneath aio-pika: the raw channel, subscribing and publishing on it.

aio-pika opens the connections and channels, restores them after a reconnect (``Robust*``) and
declares the topology; the hot paths run on the aiormq channel beneath (:data:`RawChannel`),
read through :func:`raw_channel`, the one place that asks aio-pika for it. Per message, aio-pika
would copy every property into a message object of its own and run each callback in a task of
its own; without them the worker's CPU per command at saturation fell by a sixth.
"""

from typing import TypeAlias

import aiormq.abc
from aio_pika.abc import AbstractChannel

RawChannel: TypeAlias = aiormq.abc.AbstractChannel
"""The aiormq channel beneath an aio-pika channel: frames in and out, no per-message objects."""


async def raw_channel(channel: AbstractChannel) -> RawChannel:
    """The channel beneath ``channel`` as it is now; after a reconnect, the robust channel's new one.

    :raises aiormq.exceptions.ChannelInvalidStateError: ``channel`` is not open (one of
        ``TRANSIENT_ERRORS``).
    """
    return await channel.get_underlay_channel()
