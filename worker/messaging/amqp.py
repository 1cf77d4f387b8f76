"""Everything the worker does beneath aio-pika: the raw channel, subscribing and publishing on it.

aio-pika opens the connections and channels, restores them after a reconnect (``Robust*``) and
declares the topology; the hot paths run on the aiormq channel beneath (:data:`RawChannel`),
read through :func:`raw_channel`, the one place that asks aio-pika for it. Per message, aio-pika
would copy every property into a message object of its own and run each callback in a task of
its own; without them the worker's CPU per command at saturation fell by a sixth.

- :class:`Subscription` takes a queue's deliveries on the raw channel and subscribes again
  after the robust channel is restored or the broker cancels the consumer.
- :func:`publish` sends one message on prebuilt ``spec.Basic.Properties`` on a confirm-mode
  channel and says what the broker made of it (:class:`Confirm`): events, replies and
  dead-letter copies all go out through it.
- :class:`Delivery` is what settling a delivery needs of it: the channel it came on and its tag.

Rules from AMQP 0-9-1 (class ``basic``) and RabbitMQ's documentation, cited where they apply:
"Consumer Cancel Notification" (https://www.rabbitmq.com/docs/consumer-cancel) and "Consumer
Acknowledgements and Publisher Confirms" (https://www.rabbitmq.com/docs/confirms).
"""

import asyncio
import contextlib
import enum
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeAlias

import aiormq.abc
import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustChannel
from aiormq import spec
from aiormq.exceptions import DeliveryError, PublishError
from tenacity import RetryCallState, retry_if_exception_type

from ..retries import failure, retry_in, retrying
from ..transient import TRANSIENT_ERRORS

RawChannel: TypeAlias = aiormq.abc.AbstractChannel
"""The aiormq channel beneath an aio-pika channel: frames in and out, no per-message objects."""

RawDelivery: TypeAlias = aiormq.abc.DeliveredMessage
"""A message as aiormq parsed it from a ``basic.deliver`` (or a ``basic.return``) and its frames."""

# The subscription's lines are the consumer's: they keep the logger name they always had.
log: structlog.typing.FilteringBoundLogger = structlog.get_logger("outplan_worker.consumer")


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
    def delivery_tag(self) -> int | None:
        """The channel-scoped number the broker gave the delivery; acks name it."""
        ...

    @property
    def channel(self) -> RawChannel:
        """The channel it came on: the only one its ack or reject is valid on."""
        ...


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


# ---- subscribing -----------------------------------------------------------------------------


class Subscription:
    """One consumer on ``queue``, kept subscribed until :meth:`cancel`.

    Deliveries go to ``on_delivered`` as aiormq parsed them, on the channel beneath the queue's.
    The robust channel reconnects and declares the queue again by itself; the subscription then
    subscribes again, with the same consumer tag. So it does when the broker cancels the
    consumer (the queue was deleted, say: RabbitMQ's "Consumer Cancel Notification").
    """

    def __init__(
        self, queue: AbstractQueue, on_delivered: Callable[[RawDelivery], Coroutine[Any, Any, None]]
    ) -> None:
        self._queue = queue
        self._on_delivered = on_delivered
        self._channel: RawChannel | None = None  # the channel subscribed on
        self._tag: str | None = None
        self._cancelled = False
        self._resubscribing: asyncio.Task[None] | None = None

    @property
    def attached(self) -> bool:
        """Consuming now: subscribed on a channel that is open."""
        return self._tag is not None and self._channel is not None and not self._channel.is_closed

    async def start(self) -> None:
        """Subscribe (``basic.consume``), and again whenever the robust channel is restored.

        :raises TRANSIENT_ERRORS: the channel is not open or the link broke; nothing is retried here.
        """
        channel = self._queue.channel
        if isinstance(channel, AbstractRobustChannel):
            channel.reopen_callbacks.add(self._reopened)
        await self._subscribe()

    async def cancel(self) -> None:
        """Take nothing more (``basic.cancel``, waiting up to 5 s); deliveries already made stay to settle.

        A channel that is gone delivers nothing more either: its failure is not raised.
        """
        self._cancelled = True
        if self._resubscribing is not None:
            self._resubscribing.cancel()
        if self._channel is not None and self._tag is not None:
            tag, self._tag = self._tag, None
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await self._channel.basic_cancel(tag, timeout=5)

    async def _subscribe(self) -> None:
        channel = await raw_channel(self._queue.channel)
        channel.on_consumer_cancel_callbacks.add(self._on_cancel)
        ok = await channel.basic_consume(self._queue.name, self._on_delivered, consumer_tag=self._tag)
        if self._cancelled:  # cancel() came while this was on its way: take nothing more
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await channel.basic_cancel(ok.consumer_tag or "", timeout=5)
            return
        self._tag, self._channel = ok.consumer_tag, channel

    def _reopened(self, *_: object) -> None:
        """The robust channel is back after a reconnect (it restores qos and the queue first).

        Only a task is started here: the channel's restore holds a lock while its callbacks
        run, and a network call made under it could be cut off by the next disconnect.
        """
        self._channel = None
        self._keep_subscribed("consuming again after the channel was restored")

    def _on_cancel(self, frame: spec.Basic.Cancel) -> None:
        """The broker cancelled the subscription (the queue was deleted, say): subscribe again.

        Called from the channel's reader, which must go on reading: the subscribing runs in a
        task. If the queue is gone, that closes the channel; the robust channel declares the
        queue again, and the task subscribes once it has.
        """
        if frame.consumer_tag == self._tag and not self._cancelled:
            log.warning(
                "the broker cancelled the consumer; subscribing again", consumer_tag=frame.consumer_tag
            )
            self._channel = None  # not attached until subscribed again
            self._keep_subscribed("consuming again after the broker cancelled the consumer")

    def _keep_subscribed(self, done: str) -> None:
        if self._resubscribing is None or self._resubscribing.done():
            self._resubscribing = asyncio.create_task(self._subscribe_until_attached(done))

    async def _subscribe_until_attached(self, done: str) -> None:
        """Subscribe on the channel once it is ready; retry any error until attached or cancelled.

        Waits 0.1 s doubling to 5 s, jittered, between attempts; ``cancel()`` cancels the task.
        Logs ``done`` once attached.
        """
        queue = self._queue

        def log_retry(retry_state: RetryCallState) -> None:
            exc = failure(retry_state)
            log.warning(
                "subscribing failed; retrying",
                error=type(exc).__name__,
                detail=str(exc),
                retry_in=retry_in(retry_state),
            )

        async for attempt in retrying(
            first=0.1,
            most=5.0,
            # Transient or not, the consumer must not stay detached.
            retry=retry_if_exception_type(Exception),
            before_sleep=log_retry,
        ):
            if self._cancelled or self.attached:
                return
            with attempt:
                channel = queue.channel
                if isinstance(channel, AbstractRobustChannel):
                    await channel.ready()  # restored: qos set and the queue declared
                await self._subscribe()
        if self.attached:
            log.info(done, queue=queue.name)
