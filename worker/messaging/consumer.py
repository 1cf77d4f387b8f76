"""The command consumer: decode, execute, then settle each delivery as the policy decides.

How a delivery ends is decided by one pure function, ``settlement.decide``, from what happened
to it, this delivery's number as the broker counts it, and ``OUTPLAN_RETRY_LIMIT``; this module
reports what happened and carries the decision out (reply, dead-letter copy, ack or requeue).

Changes go through the batcher: a batch is applied and written at once (``Service.change``),
its replies are published together and its deliveries acked with one multiple ack. Queries and
rejections run on their own, so a read never waits behind a batch of writes.

Deliveries are taken on the channel beneath aio-pika's (``amqp.Subscription``, read as
``Incoming``); the subscription is renewed after a reconnect or a cancel by the broker.
"""

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

import structlog
from aio_pika.abc import AbstractQueue
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from contracts import ErrorInfo, Reply, replies

from ..batching import Batcher
from ..observability import metrics
from ..requests import Rejection, Request, decode
from ..retries import failure, retry_in, retrying
from ..service import Outcome, Service
from ..settings import Settings
from ..transient import TRANSIENT_ERRORS
from .acks import AckTracker
from .amqp import RawDelivery, Subscription
from .incoming import Incoming
from .outgoing import Outgoing, PublishRefused
from .settlement import Disposition, Happened, Settle, decide, delivery_number

log: structlog.typing.FilteringBoundLogger = structlog.get_logger("outplan_worker.consumer")


@dataclass(slots=True)
class Delivery:
    message: Incoming
    request: Request
    started: float


class CommandConsumer:
    def __init__(self, settings: Settings, service: Service, outgoing: Outgoing) -> None:
        self._settings = settings
        self._service = service
        self._batcher: Batcher[Delivery] = Batcher(
            self._change, size=settings.batch_size, writers=settings.batch_writers
        )
        self._outgoing = outgoing  # replies and dead-letter copies, on a connection of their own
        self._acks = AckTracker()
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
        """Start the batcher and subscribe to ``queue``; it is subscribed again after a reconnect.

        :raises TRANSIENT_ERRORS: the first subscribing failed (the channel is not open).
        """
        self._batcher.start()
        self._subscription = Subscription(queue, self._on_delivered)
        await self._subscription.start()

    async def stop(self) -> None:
        """Stop taking new messages; those in flight carry on."""
        if self._subscription is not None:
            await self._subscription.cancel()

    async def drain(self, timeout: float) -> bool:
        """Wait for messages in flight; False if some were still running at the timeout."""
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
        self._acks.received(message)
        self._in_flight += 1
        self._idle.clear()
        try:
            decoded = decode(
                message.body,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                routing_key=message.routing_key,
                type_=message.type,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                unreadable=message.unreadable,
            )
        except Exception as exc:  # noqa: BLE001 - decode is total; a bug in it gives the message back
            self._spawn(self._give_back_one(message, exc))
            return
        if isinstance(decoded, Rejection):
            self._spawn(self._reject(message, decoded, started))
        elif decoded.command.mutates:
            self._batcher.add(Delivery(message, decoded, started), key=getattr(decoded.command, "id", None))
        else:
            self._spawn(self._query(Delivery(message, decoded, started)))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)  # a strong reference until it finishes
        task.add_done_callback(self._tasks.discard)

    def _finished(self, count: int = 1) -> None:
        self._in_flight -= count
        self.handled += count
        if self._in_flight == 0:
            self._idle.set()

    # ---- the three paths ---------------------------------------------------------------------

    async def _reject(self, message: Incoming, rejection: Rejection, started: float) -> None:
        """Invalid input: answered 400 and dead-lettered with the reason, on its first delivery."""
        try:
            number = delivery_number(message.headers, message.redelivered)
            await self._carry_out(
                message,
                decide(Happened.INVALID, number, self._settings.retry_limit),
                number,
                reply=(rejection.status_code, rejection.reply().to_json()),
                dead_letter=_DeadLetter(rejection.status, rejection.reason, rejection.message),
            )
            await self._acks.flush()
            metrics.COMMANDS.labels(rejection.command or "unknown", rejection.reason).inc()
            metrics.DEAD_LETTERED.labels(rejection.reason).inc()
            log.warning(
                "command rejected",
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                command=rejection.command,
                outcome=rejection.reason,
                error=rejection.message,
                duration_ms=_ms(started),
            )
        except Exception as exc:  # noqa: BLE001 - settling failed (a bug): logged, message returned
            await self._give_back(message, exc)
        finally:
            self._finished()

    async def _query(self, delivery: Delivery) -> None:
        def log_retry(retry_state: RetryCallState) -> None:
            _logger(delivery).warning(
                "database unavailable; holding the message",
                error=type(failure(retry_state)).__name__,
                retry_in=retry_in(retry_state),
            )

        try:
            result: Outcome | Exception
            try:
                async for attempt in _until_the_database_answers(log_retry):
                    with attempt:
                        result = await self._service.query(delivery.request)
            except Exception as exc:  # noqa: BLE001 - a bug: bounded redelivery, then dead-lettered
                result = exc
            await self._conclude(delivery, result)
            await self._acks.flush()
        except Exception as exc:  # noqa: BLE001 - settling failed (a bug): logged, message returned
            await self._give_back(delivery.message, exc)
        finally:
            self._finished()

    async def _change(self, batch: list[Delivery]) -> None:
        """A batch of changes: applied at once, replies published together, one multiple ack."""
        try:
            results = await self._apply(batch)
            concluded = await asyncio.gather(
                *(self._conclude(d, r) for d, r in zip(batch, results, strict=True)), return_exceptions=True
            )
            for delivery, error in zip(batch, concluded, strict=True):
                if isinstance(error, BaseException):
                    await self._give_back(delivery.message, error)
            await self._acks.flush()
        except Exception as exc:  # noqa: BLE001 - settling failed (a bug): logged, messages returned
            for delivery in batch:
                await self._give_back(delivery.message, exc)
        finally:
            self._finished(len(batch))

    async def _apply(self, batch: list[Delivery]) -> list[Outcome | Exception]:
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
            async for attempt in _until_the_database_answers(log_retry):
                with attempt:
                    results: list[Outcome | Exception] = list(
                        await self._service.change([d.request for d in batch])
                    )
        except Exception as exc:  # noqa: BLE001 - a bug in one command: isolated, then dead-lettered
            if len(batch) == 1:
                return [exc]
            # One command is broken: apply the others one by one so only it fails.
            return [result for delivery in batch for result in await self._apply([delivery])]
        return results

    # ---- settling: the policy decides (settlement.decide), this carries it out -----------------

    async def _conclude(self, delivery: Delivery, result: Outcome | Exception) -> None:
        """Settle a command that ran: its outcome, or the exception its handler raised."""
        message = delivery.message
        number = delivery_number(message.headers, message.redelivered)
        if isinstance(result, Outcome):
            await self._carry_out(
                message,
                decide(Happened.HANDLED, number, self._settings.retry_limit),
                number,
                reply=(result.status_code, result.reply),
            )
            self._handled(delivery, result)
            return
        disposition = decide(Happened.FAILED, number, self._settings.retry_limit)
        bound = _logger(delivery)
        if disposition.settle is Settle.REQUEUE:
            bound.error(
                "handler failed; redelivering",
                delivery=number,
                exc_info=result,
                duration_ms=_ms(delivery.started),
            )
            await self._carry_out(message, disposition, number)
            return
        await self._carry_out(
            message,
            disposition,
            number,
            reply=(500, _INTERNAL_REPLY),
            dead_letter=_DeadLetter(
                replies.INTERNAL,
                replies.INTERNAL_ERROR,
                f"{type(result).__name__}: {result}",
                {
                    "x-exception-class": type(result).__name__,
                    "x-exception-message": str(result)[:1000],
                    "x-deliveries": number,
                },
            ),
        )
        metrics.COMMANDS.labels(delivery.request.command.command, "500").inc()
        metrics.DEAD_LETTERED.labels(replies.INTERNAL_ERROR).inc()
        bound.error(
            "command dead-lettered after repeated failures",
            outcome=replies.INTERNAL_ERROR,
            delivery=number,
            exc_info=result,
            duration_ms=_ms(delivery.started),
        )

    async def _carry_out(
        self,
        message: Incoming,
        disposition: Disposition,
        number: int,
        *,
        reply: tuple[int, bytes] | None = None,
        dead_letter: "_DeadLetter | None" = None,
    ) -> None:
        """Reply, dead-letter and settle as ``disposition`` says; a failed publish is decided on again."""
        failed: list[Happened] = []
        if disposition.reply and reply is not None:
            failed += await self._publishing("reply", message, self._outgoing.reply(message, *reply))
        if disposition.dead_letter and dead_letter is not None:
            failed += await self._publishing(
                "dead letter",
                message,
                self._outgoing.dead_letter(
                    message,
                    status=dead_letter.status,
                    reason=dead_letter.reason,
                    text=dead_letter.text,
                    extra=dead_letter.extra,
                ),
            )
        if failed:  # an interrupted publish is worth another delivery; a refused one is not
            worst = (
                Happened.PUBLISH_INTERRUPTED
                if Happened.PUBLISH_INTERRUPTED in failed
                else Happened.PUBLISH_REFUSED
            )
            disposition = decide(worst, number, self._settings.retry_limit)
        if disposition.settle is Settle.REQUEUE:
            await self._requeue(message)
        else:
            self._acks.settled(message)

    async def _publishing(
        self, what: str, message: Incoming, publish: Coroutine[None, None, None]
    ) -> list[Happened]:
        """Await one reply or dead-letter publish; what went wrong, logged once and counted, if anything."""
        error: BaseException
        try:
            await publish
            return []
        except PublishRefused as exc:
            happened, reason, error = Happened.PUBLISH_REFUSED, exc.reason, exc
        except TRANSIENT_ERRORS as exc:
            happened, reason, error = Happened.PUBLISH_INTERRUPTED, "interrupted", exc
        (metrics.REPLIES_FAILED if what == "reply" else metrics.DEAD_LETTERS_FAILED).labels(reason).inc()
        log.warning(
            f"{what} not published",
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to if what == "reply" else None,
            reason=reason,
            error=type(error).__name__,
            detail=str(error),
        )
        return [happened]

    async def _requeue(self, message: Incoming) -> None:
        """Return the message to the queue; the broker counts the redelivery."""
        if not self._acks.pending(message):
            return  # settled already, or from a channel that is gone: the broker redelivers it
        try:
            await message.reject(requeue=True)
        except TRANSIENT_ERRORS:
            return  # the channel is gone: the broker redelivers it all the same
        self._acks.settled(message, ack=False)  # only once the reject is on its way

    def _handled(self, delivery: Delivery, outcome: Outcome) -> None:
        message, cmd = delivery.message, delivery.request.command
        label = "replayed" if outcome.replayed else str(outcome.status_code)
        metrics.COMMANDS.labels(cmd.command, label).inc()
        metrics.HANDLING.labels(cmd.command).observe(time.perf_counter() - delivery.started)
        log.info(  # one call, no bound logger: this runs for every command
            "command handled",
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            command=cmd.command,
            customer_id=str(cmd.customer_id),
            outplan_id=str(outcome.outplan_id) if outcome.outplan_id else None,
            outcome="replayed" if outcome.replayed else outcome.status_code,
            duration_ms=_ms(delivery.started),
        )

    async def _give_back_one(self, message: Incoming, exc: BaseException) -> None:
        try:
            await self._give_back(message, exc)
        finally:
            self._finished()

    async def _give_back(self, message: Incoming, exc: BaseException) -> None:
        """Settling itself failed (a bug here): return the message; its redelivery repeats the same reply."""
        if not self._acks.pending(message):
            return
        log.error(
            "could not settle the message; returning it to the queue",
            message_id=message.message_id,
            exc_info=exc,
        )
        await self._requeue(message)


@dataclass(frozen=True, slots=True)
class _DeadLetter:
    status: str
    reason: str
    text: str
    extra: dict[str, object] | None = None


_INTERNAL_REPLY = Reply(
    status_code=500,
    error=ErrorInfo(
        status=replies.INTERNAL,
        reason=replies.INTERNAL_ERROR,
        message="the command failed inside the worker and was set aside for inspection",
    ),
).to_json()


def _until_the_database_answers(before_sleep: Callable[[RetryCallState], None]) -> AsyncRetrying:
    """Happened.UNAVAILABLE: transient errors are retried here, without end, waiting 0.05 s doubling
    to 2 s, jittered; any other error of an attempt is raised (a bug: settled by the policy)."""
    return retrying(
        first=0.05, most=2.0, retry=retry_if_exception_type(TRANSIENT_ERRORS), before_sleep=before_sleep
    )


def _logger(delivery: Delivery) -> structlog.typing.FilteringBoundLogger:
    message, cmd = delivery.message, delivery.request.command
    return log.bind(
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        command=cmd.command,
        customer_id=str(cmd.customer_id),
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
