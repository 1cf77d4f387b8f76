"""Publishing logged events: the message every event becomes, and the engine behind ``replay``.

Every event goes out as its stored CloudEvents body with the contract's properties
(:func:`event_properties`), ``mandatory``, on a confirm-mode channel (:func:`publish_event`):
the relay publishes the outbox that way (its hot path), and :class:`Republisher` sends a range of
the event log again for ``outplan-worker replay``. What the broker made of each publish is an
``amqp.Confirm``.
"""

import asyncio
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass, field

from aio_pika.abc import AbstractChannel
from aiormq import spec

from contracts import names

from ..observability import spans
from ..persistence.outbox import LoggedEvent
from .amqp import PERSISTENT, Confirm, RawChannel, publish, raw_channel


def event_properties(
    event: LoggedEvent, headers: dict[str, bool | str] | None = None
) -> spec.Basic.Properties:
    """The AMQP properties of an event's message: persistent, with the contract's properties
    and ``headers`` (trace context among them, see :func:`publish_event`)."""
    return spec.Basic.Properties(
        message_id=event.event_id,
        message_type=event.event_type,
        content_type=names.EVENT_CONTENT_TYPE,
        correlation_id=event.correlation_id,
        delivery_mode=PERSISTENT,
        headers=dict(headers or {}),
    )


async def publish_event(
    channel: RawChannel,
    exchange: str,
    routing_key: str,
    event: LoggedEvent,
    headers: dict[str, bool | str] | None = None,
    *,
    broker: spans.Peer | None = None,
    tracing: spans.Tracing | None = None,
) -> Confirm:
    """Publish the stored body, ``mandatory``, on a confirm channel; returns once the broker answered.

    In a PRODUCER span ``publish <exchange>`` (child of the causing command's stored trace context,
    and linked to it) when spans are recorded; the message's ``traceparent``/``tracestate`` headers
    are that span's context, else the stored context unchanged (none when the event has none).
    ``broker`` gives the span's ``server.address`` and ``server.port``; ``tracing`` the tracer
    (``spans.current()`` by default). A nack marks the span an error (``error.type`` ``nacked``);
    an unrouted return does not (see ``Target``).

    A broken link raises (``ChannelInvalidStateError``, ``ConnectionError``, ...). Returns are
    matched to publishes by ``message_id`` (the event id); they come back as ``UNROUTED`` whether
    the channel was opened with ``on_return_raises`` or not (:func:`.amqp.publish`).
    Straight on the channel beneath aio-pika's: it is the relay's hot path, and building an
    aio-pika message per event cost more than the publish itself.
    """
    traced = (tracing or spans.current()).start_publish(
        exchange=exchange,
        routing_key=routing_key,
        message_id=event.event_id,
        correlation_id=event.correlation_id,
        body_size=len(event.body),
        traceparent=event.traceparent,
        tracestate=event.tracestate,
        peer=broker or _NO_PEER,
    )
    if traced.headers:
        headers = {**traced.headers, **(headers or {})}
    try:
        confirm = await publish(
            channel,
            event.body,
            exchange=exchange,
            routing_key=routing_key,
            properties=event_properties(event, headers),
            mandatory=True,
        )
    except BaseException as exc:
        traced.end(type(exc).__name__, str(exc))
        raise
    traced.end("nacked" if confirm is Confirm.REFUSED else None)
    return confirm


_NO_PEER = spans.Peer()


@dataclass(frozen=True)
class Target:
    """Where replayed events go: an exchange (routing key = event type unless given) or one queue."""

    exchange: str = ""
    routing_key: str | None = None
    queue: str | None = None

    @property
    def unrouted_fails(self) -> bool:
        """A return is a failure when every event goes one way: to one queue, or with one routing key.

        With the event type as routing key, a subscriber binding only some types is the ordinary
        use of a topic exchange: the rest come back unrouted, and are counted.
        """
        return self.queue is not None or self.routing_key is not None

    def route(self, event: LoggedEvent) -> tuple[str, str]:
        """The exchange and routing key ``event`` is published with."""
        if self.queue is not None:
            return "", self.queue  # the default exchange delivers to exactly that queue
        return self.exchange, self.routing_key or event.event_type


@dataclass
class Progress:
    """How far a replay got: events selected, and what the broker made of those sent."""

    selected: int = 0
    confirmed: int = 0
    unrouted: int = 0  # taken by the broker, matched no binding (not a failure; see ``Target``)
    failed: int = 0
    last_confirmed_seq: int | None = None  # the last of an unbroken run of settled events
    started: float = field(default_factory=time.monotonic)
    error: str | None = None

    @property
    def settled(self) -> int:
        """Events the broker took: confirmed, or returned unrouted."""
        return self.confirmed + self.unrouted

    @property
    def rate(self) -> float:
        """Events settled per second so far."""
        elapsed = time.monotonic() - self.started
        return self.settled / elapsed if elapsed > 0 else 0.0


class Republisher:
    """Sends events in order with up to ``window`` confirms in flight; stops at the first failure.

    A failure is a nack, an unrouted event when the target says so (``Target.unrouted_fails``),
    or a broken link; ``Progress.error`` says which. ``channel`` is in confirm mode; ``rate``
    caps the events sent per second (none: as fast as the window allows).
    """

    def __init__(
        self,
        channel: AbstractChannel,
        target: Target,
        *,
        run_id: str,
        window: int = 256,
        rate: float | None = None,
        broker: spans.Peer | None = None,
    ) -> None:
        self._channel = channel
        self._target = target
        self._run_id = run_id
        self._window = window
        self._interval = 1.0 / rate if rate else 0.0
        self._broker = broker  # for the publish spans' server.address and server.port
        self.stop_requested = asyncio.Event()

    async def _publish(self, event: LoggedEvent) -> Confirm:
        exchange_name, routing_key = self._target.route(event)
        channel = await raw_channel(self._channel)
        return await publish_event(
            channel,
            exchange_name,
            routing_key,
            event,
            headers={"x-replayed": True, "x-replay-run-id": self._run_id},
            broker=self._broker,
        )

    def _failure(self, event: LoggedEvent, outcome: Confirm) -> str | None:
        if outcome is Confirm.REFUSED:
            return f"Refused: eventsequence {event.eventsequence} was nacked by the broker (basic.nack)"
        if outcome is Confirm.UNROUTED and self._target.unrouted_fails:
            exchange, routing_key = self._target.route(event)
            where = (
                f"queue {routing_key!r}"
                if self._target.queue is not None
                else (f"exchange {exchange!r} with routing key {routing_key!r}")
            )
            return f"Unrouted: eventsequence {event.eventsequence} reached no queue (NO_ROUTE) via {where}"
        return None

    async def run(self, batches: AsyncIterable[list[LoggedEvent]], progress: Progress) -> None:
        """Publish the events of ``batches`` in order, counting into ``progress``; stop at the first failure.

        Returns after the last answer, after a failure (``progress.error`` says which), or once
        ``stop_requested`` is set (the events already sent are answered first). A link that
        breaks while publishing is a failure like the others, not raised; what ``batches``
        raises is.
        """
        in_flight: list[tuple[LoggedEvent, asyncio.Task[Confirm]]] = []
        next_send = time.monotonic()

        async def give_up(error: str) -> bool:
            progress.failed += 1 + len(in_flight)
            progress.error = error
            for _, rest in in_flight:
                rest.cancel()
            await asyncio.gather(*(t for _, t in in_flight), return_exceptions=True)
            in_flight.clear()
            return False

        async def settle(keep: int) -> bool:
            # Answers are taken in publish order, so the last settled sequence is contiguous.
            while len(in_flight) > keep:
                event, task = in_flight.pop(0)
                try:
                    outcome = await task
                except Exception as exc:  # noqa: BLE001 - the link broke (any error): replay stops, says why
                    return await give_up(f"{type(exc).__name__}: {exc}")
                error = self._failure(event, outcome)
                if error is not None:
                    return await give_up(error)
                if outcome is Confirm.UNROUTED:
                    progress.unrouted += 1
                else:
                    progress.confirmed += 1
                progress.last_confirmed_seq = event.eventsequence
            return True

        async for batch in batches:
            for event in batch:
                if self.stop_requested.is_set():
                    await settle(0)
                    return
                progress.selected += 1
                if self._interval:
                    delay = next_send - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_send = max(next_send, time.monotonic() - 1.0) + self._interval
                in_flight.append((event, asyncio.create_task(self._publish(event))))
                if not await settle(self._window - 1):
                    return
        await settle(0)
