"""The command consumer: take each delivery, decode it, run it, and have it settled.

Deliveries come from an ``amqp.Subscription``, read as ``Incoming``, and go one of three ways: a
rejection (invalid input) is settled at once; a change joins the batcher, which applies a batch
at once (``Service.change``), its replies sent together and its deliveries acked with one
multiple ack; a query runs on its own, so a read never waits behind a batch of writes. The
``Settler`` ends each as ``settlement.decide`` says; while the database is unavailable
(``Happened.UNAVAILABLE``) a command is held here and tried again, neither answered nor
dead-lettered.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TypeVar

import asyncpg
import structlog
from aio_pika.abc import AbstractQueue
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from .. import refusals
from ..batching import Batcher
from ..observability import spans
from ..requests import Rejection, decode
from ..retries import failure, retry_in, retrying, try_first
from ..service import Outcome, Service
from ..settings import Settings
from ..transient import TRANSIENT_ERRORS
from .amqp import RawDelivery, Subscription
from .incoming import Incoming
from .outgoing import Outgoing
from .settler import Decoded, Settler

log: structlog.typing.FilteringBoundLogger = structlog.get_logger("outplan_worker.consumer")
T = TypeVar("T")


class CommandConsumer:
    """Consumes the command queue; ``outgoing`` publishes its replies and dead-letter copies.

    ``handled`` counts the deliveries finished so far (settled, or given back to the queue).
    """

    def __init__(self, settings: Settings, service: Service, outgoing: Outgoing) -> None:
        self._service = service
        self._queue = settings.command_queue
        self._broker = spans.Peer.from_url(settings.amqp_url.get_secret_value(), 5672)
        self._database = spans.Peer.from_url(settings.database_url.get_secret_value(), 5432)
        self._settler = Settler(outgoing, settings.retry_limit, self._broker)
        self._tracing = spans.current()  # the provider is set (or not) before the worker starts
        self._batcher: Batcher[Decoded] = Batcher(
            self._change, size=settings.batch_size, writers=settings.batch_writers
        )
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.handled = 0

    @property
    def attached(self) -> bool:
        """Consuming now: subscribed on a channel that is open."""
        return self._subscription is not None and self._subscription.attached

    async def start(self, queue: AbstractQueue) -> None:
        """Start the batcher and subscribe to ``queue``; a closed channel raises (``TRANSIENT_ERRORS``)."""
        self._batcher.start()
        self._subscription = Subscription(queue, self._on_delivered)
        await self._subscription.start()

    async def stop(self) -> None:
        """Stop taking new messages; those in flight carry on."""
        if self._subscription is not None:
            await self._subscription.cancel()

    async def drain(self, timeout: float) -> bool:
        """Wait for messages in flight up to ``timeout`` (s); False if some were still running then."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False
        finally:
            await self._batcher.stop()

    async def _on_delivered(self, delivered: RawDelivery) -> None:
        self.on_message(Incoming(delivered))

    def on_message(self, message: Incoming) -> None:
        """Take a delivery: decode it and hand it on. Quick, so deliveries keep flowing."""
        started = time.perf_counter()
        self._settler.received(message)
        self._in_flight += 1
        self._idle.clear()
        try:
            trace = self._tracing.start_command(
                message.headers,
                queue=self._queue,
                exchange=message.exchange,
                routing_key=message.routing_key,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                body_size=len(message.body),
                peer=self._broker,
            )
            decoded = decode(
                message.body,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                routing_key=message.routing_key,
                type_=message.type,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                unreadable=message.unreadable,
                traceparent=trace.traceparent,
                tracestate=trace.tracestate,
            )
        except Exception as exc:  # noqa: BLE001 - decode is total; a bug in it gives the message back
            self._spawn(self._give_back_one(message, exc))
            return
        if isinstance(decoded, Rejection):
            self._spawn(self._settling([message], self._settler.reject(message, decoded, started, trace)))
        elif decoded.command.mutates:
            # A batch writer calls back ``_change`` below with this command's batch.
            self._batcher.add(
                Decoded(message, decoded, started, trace), key=getattr(decoded.command, "id", None)
            )
        else:
            self._spawn(self._settling([message], self._query(Decoded(message, decoded, started, trace))))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)  # a strong reference until it finishes
        task.add_done_callback(self._tasks.discard)

    async def _settling(self, messages: list[Incoming], work: Awaitable[None]) -> None:
        """Await ``work``, which settles ``messages``; should settling fail (a bug), give them back."""
        try:
            await work
        except Exception as exc:  # noqa: BLE001 - settling failed (a bug): logged, messages returned
            for message in messages:
                await self._settler.give_back(message, exc)
        finally:
            self._finished(len(messages))

    async def _give_back_one(self, message: Incoming, exc: BaseException) -> None:
        try:
            await self._settler.give_back(message, exc)
        finally:
            self._finished()

    def _finished(self, count: int = 1) -> None:
        self._in_flight -= count
        self.handled += count
        if self._in_flight == 0:
            self._idle.set()

    async def _query(self, command: Decoded) -> None:
        with command.trace.active():  # its log lines carry the command's trace
            await self._answer(command)

    async def _answer(self, command: Decoded) -> None:
        def log_retry(retry_state: RetryCallState) -> None:
            command.logger().warning(
                "database unavailable; holding the message",
                error=type(failure(retry_state)).__name__,
                retry_in=retry_in(retry_state),
            )

        result: Outcome | Exception
        try:
            result = await held(lambda: self._service.query(command.request), log_retry)
        except Exception as exc:  # noqa: BLE001 - a bug: bounded redelivery, then dead-lettered
            result = exc
        await self._settler.conclude(command, result)
        await self._settler.flush()

    async def _change(self, batch: list[Decoded]) -> None:
        """A batch of changes: applied at once, replies published together, one multiple ack."""
        await self._settling([command.message for command in batch], self._conclude_batch(batch))

    async def _conclude_batch(self, batch: list[Decoded]) -> None:
        results = await self._apply(batch)
        concluded = await asyncio.gather(
            *(self._settler.conclude(c, r) for c, r in zip(batch, results, strict=True)),
            return_exceptions=True,
        )
        for command, error in zip(batch, concluded, strict=True):
            if isinstance(error, BaseException):
                await self._settler.give_back(command.message, error)
        await self._settler.flush()

    async def _apply(self, batch: list[Decoded]) -> list[Outcome | Exception]:
        """Run the batch until the database takes it; a bug fails only the command that has it."""

        def log_retry(retry_state: RetryCallState) -> None:
            log.warning(
                "database unavailable; holding the messages",
                error=type(failure(retry_state)).__name__,
                messages=len(batch),
                retry_in=retry_in(retry_state),
            )

        try:
            # The whole batch is held and tried again; never given up on.
            return list(await held(lambda: self._write(batch), log_retry))
        except Exception as exc:  # noqa: BLE001 - a bug in one command: isolated, then dead-lettered
            if len(batch) == 1:
                return [exc]
            # One command is broken: apply the others one by one so only it fails.
            return [result for command in batch for result in await self._apply([command])]

    async def _write(self, batch: list[Decoded]) -> list[Outcome]:
        """One attempt at the batch, in its ``BATCH`` span (linked to the commands' spans)."""
        with self._tracing.batch_write([c.trace for c in batch], self._database):
            return await self._service.change([c.request for c in batch])


# Held like an outage: a privilege the role lacks is no bug of the command's (it must not be
# dead-lettered for it); it is reported once and stops the worker, which gives the message back.
_HELD: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.InsufficientPrivilegeError)


def held(attempt: Callable[[], Awaitable[T]], before_sleep: Callable[[RetryCallState], None]) -> Awaitable[T]:
    """``attempt()``, tried again through transient errors (``Happened.UNAVAILABLE``) after a first
    try, and through a privilege refused (reported at once: the worker stops)."""
    return try_first(attempt, _HELD, then=lambda: until_the_database_answers(before_sleep))


def _worth_holding(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return refusals.report(refusals.database_refusal(exc))


def until_the_database_answers(before_sleep: Callable[[RetryCallState], None]) -> AsyncRetrying:
    """Happened.UNAVAILABLE: transient errors (``TRANSIENT_ERRORS``: the database or the broker away,
    a lost write race) and a privilege refused (``refusals.database_refusal``: reported, the worker
    stops) are retried here, without end, waiting 0.05 s doubling to 2 s, jittered; any other
    error of an attempt is raised (a bug: settled by the policy)."""
    return retrying(first=0.05, most=2.0, retry=retry_if_exception(_worth_holding), before_sleep=before_sleep)
