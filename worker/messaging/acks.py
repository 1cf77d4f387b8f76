"""Acknowledge deliveries in bulk: one ``basic.ack(multiple=True)`` for a settled run of them.

Messages finish out of order (batches run side by side, a query may be slow), and a multiple
ack covers every outstanding delivery up to its tag. So the tracker acks only up to the highest
tag below which *every* delivery is settled, and that tag is itself one to ack: RabbitMQ closes
the channel on a multiple ack whose own tag is no longer outstanding (one rejected on its own).
A rejection is counted as settled only after its frame was written, so an ack sent later can
never overtake it and swallow a message meant for redelivery. Acks go out one at a time.

Delivery tags count up from 1 per channel; when the robust channel is replaced after a
reconnect, the tracker starts over on the new one. Deliveries from the old channel cannot be
acked any more: the broker has already put them back on the queue.
"""

import asyncio

from ..transient import TRANSIENT_ERRORS
from .amqp import Delivery, RawChannel


class AckTracker:
    """Which deliveries of the consuming channel are settled, and the one multiple ack that covers them.

    Takes any :class:`~.amqp.Delivery` (the channel it came on and its tag); acks go out on that
    channel. Not thread-safe; one per consumer, on its event loop.
    """

    def __init__(self) -> None:
        self._channel: RawChannel | None = None
        self._floor = 0  # every delivery tag <= floor is settled
        self._ack_to = 0  # the highest settled tag <= floor that is to be acked
        self._acked = 0  # the highest tag an ack was sent for
        self._settled: dict[int, bool] = {}  # settled above the floor: tag -> to be acked
        self._lock = asyncio.Lock()

    def received(self, message: Delivery) -> None:
        """Note a delivery as it arrives; deliveries arrive in tag order."""
        if message.channel is not self._channel:
            self._channel = message.channel
            self._floor = self._ack_to = self._acked = (message.delivery_tag or 1) - 1
            self._settled.clear()

    def settled(self, message: Delivery, *, ack: bool = True) -> None:
        """The message is done: to be acked, or (``ack=False``) already rejected on its own."""
        tag = message.delivery_tag
        if message.channel is not self._channel or tag is None or tag <= self._floor:
            return  # from a channel that is gone: the broker redelivers it
        self._settled[tag] = ack
        while self._floor + 1 in self._settled:
            self._floor += 1
            if self._settled.pop(self._floor):
                self._ack_to = self._floor

    def pending(self, message: Delivery) -> bool:
        """Delivered on the current channel and not settled yet."""
        tag = message.delivery_tag
        return (
            message.channel is self._channel
            and tag is not None
            and tag > self._floor
            and tag not in self._settled
        )

    async def flush(self) -> None:
        """Send one multiple ack covering every settled delivery not acked yet."""
        async with self._lock:
            channel, tag = self._channel, self._ack_to
            if channel is None or tag <= self._acked:
                return
            try:
                await channel.basic_ack(tag, multiple=True)
            except TRANSIENT_ERRORS:
                return  # the channel is gone; its unacked deliveries go back to the queue
            if channel is self._channel:
                self._acked = tag

    @property
    def waiting(self) -> int:
        """Settled deliveries held back by an earlier one still in progress."""
        return len(self._settled)
