"""The command consumer: decode, execute, reply, then settle each message in one place.

How a message ends is decided here from what happened to it:
- invalid input: 400 reply, dead-lettered with ``x-error-*`` headers, acked (never requeued);
- infrastructure trouble: held and retried until it goes through (never dead-lettered);
- a handler bug: rejected for redelivery until ``retry_limit`` deliveries, then 500 reply
  and dead-lettered with the exception's class and message.

Changes go through the batcher: a batch is applied and written at once (``Service.change``),
its replies are published together and its deliveries acked with one multiple ack. Queries and
rejections run on their own, so a read never waits behind a batch of writes.

Deliveries are taken on the channel beneath aio-pika's (``Incoming``). The robust channel still
reconnects and declares the queue again; the consumer subscribes again when it has.
"""

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, AbstractRobustChannel
from aiormq import spec
from aiormq.abc import AbstractChannel as Underlay
from aiormq.abc import DeliveredMessage

from contracts import ErrorInfo, Reply, replies

from ..batching import Batcher
from ..observability import metrics
from ..requests import Rejection, Request, decode
from ..service import Outcome, Service
from ..settings import Settings
from ..transient import TRANSIENT_ERRORS
from .acks import AckTracker
from .incoming import Incoming

log = structlog.get_logger("outplan_worker.consumer")


@dataclass(slots=True)
class Delivery:
    message: Incoming
    request: Request
    started: float


class CommandConsumer:
    def __init__(self, settings: Settings, service: Service, publisher: AbstractChannel) -> None:
        self._settings = settings
        self._service = service
        self._batcher: Batcher[Delivery] = Batcher(self._change, size=settings.batch_size,
                                                   writers=settings.batch_writers)
        self._publisher = publisher  # confirm-mode channel for replies and dead letters
        self._acks = AckTracker()
        self._queue: AbstractQueue | None = None
        self._underlay: Underlay | None = None  # the channel the consumer is subscribed on
        self._tag: str | None = None
        self._stopped = False
        self._resubscribing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.handled = 0

    @property
    def attached(self) -> bool:
        """Consuming now: subscribed on a channel that is open."""
        return self._tag is not None and self._underlay is not None and not self._underlay.is_closed

    async def start(self, queue: AbstractQueue) -> None:
        self._batcher.start()
        self._queue = queue
        if isinstance(queue.channel, AbstractRobustChannel):
            queue.channel.reopen_callbacks.add(self._reopened)
        await self._subscribe()

    async def _subscribe(self) -> None:
        assert self._queue is not None
        underlay = await self._queue.channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(self._on_cancel)
        ok = await underlay.basic_consume(self._queue.name, self._on_delivered, consumer_tag=self._tag)
        if self._stopped:  # stop() came while this was on its way: take nothing more
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await underlay.basic_cancel(ok.consumer_tag or "", timeout=5)
            return
        self._tag, self._underlay = ok.consumer_tag, underlay

    def _reopened(self, *_: object) -> None:
        """The robust channel is back after a reconnect (it restores qos and the queue first).

        Only a task is started here: the channel's restore holds a lock while its callbacks
        run, and a network call made under it could be cut off by the next disconnect.
        """
        self._underlay = None
        self._keep_subscribed("consuming again after the channel was restored")

    def _on_cancel(self, frame: spec.Basic.Cancel) -> None:
        """The broker cancelled the subscription (the queue was deleted, say): subscribe again.

        Called from the channel's reader, which must go on reading: the subscribing runs in a
        task. If the queue is gone, that closes the channel; the robust channel declares the
        queue again, and the task subscribes once it has.
        """
        if frame.consumer_tag == self._tag and not self._stopped:
            log.warning("the broker cancelled the consumer; subscribing again", consumer_tag=frame.consumer_tag)
            self._underlay = None  # not attached until subscribed again
            self._keep_subscribed("consuming again after the broker cancelled the consumer")

    def _keep_subscribed(self, done: str) -> None:
        if self._resubscribing is None or self._resubscribing.done():
            self._resubscribing = asyncio.create_task(self._subscribe_until_attached(done))

    async def _subscribe_until_attached(self, done: str) -> None:
        """Subscribe on the channel once it is ready; retry with backoff until attached or stopped."""
        assert self._queue is not None
        delay = 0.1
        while not self._stopped and not self.attached:
            try:
                channel = self._queue.channel
                if isinstance(channel, AbstractRobustChannel):
                    await channel.ready()  # restored: qos set and the queue declared
                await self._subscribe()
                if self.attached:
                    log.info(done, queue=self._queue.name)
                return
            except Exception as exc:  # transient or not, the consumer must not stay detached silently
                log.warning("subscribing failed; retrying", error=type(exc).__name__, detail=str(exc),
                            retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        """Stop taking new messages; those in flight carry on."""
        self._stopped = True
        if self._resubscribing is not None:
            self._resubscribing.cancel()
        if self._underlay is not None and self._tag is not None:
            tag, self._tag = self._tag, None
            try:
                await self._underlay.basic_cancel(tag, timeout=5)
            except TRANSIENT_ERRORS:
                pass  # the channel is gone: nothing more will be delivered on it

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

    async def _on_delivered(self, delivered: DeliveredMessage) -> None:
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
                routing_key=message.routing_key,
                type_=message.type,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
            )
        except Exception as exc:  # decode is pure and total; this would be a bug in it
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
        try:
            await self._reply(message, rejection.status_code, rejection.reply().to_json())
            await self._dead_letter(message, rejection.status, rejection.reason, rejection.message)
            self._acks.settled(message)
            await self._acks.flush()
            metrics.COMMANDS.labels(rejection.command or "unknown", rejection.reason).inc()
            metrics.DEAD_LETTERED.labels(rejection.reason).inc()
            log.warning(
                "command rejected", message_id=message.message_id, correlation_id=message.correlation_id,
                command=rejection.command, outcome=rejection.reason, error=rejection.message,
                duration_ms=_ms(started),
            )
        except Exception as exc:
            await self._give_back(message, exc)
        finally:
            self._finished()

    async def _query(self, delivery: Delivery) -> None:
        delay = 0.05
        try:
            while True:
                try:
                    outcome = await self._service.query(delivery.request)
                    break
                except TRANSIENT_ERRORS as exc:
                    _logger(delivery).warning("database unavailable; holding the message",
                                              error=type(exc).__name__, retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                except Exception as exc:  # a bug: bounded redelivery, then dead-lettered
                    await self._on_failure(delivery, exc)
                    return
            await self._reply(delivery.message, outcome.status_code, outcome.reply)
            self._handled(delivery, outcome)
            self._acks.settled(delivery.message)
            await self._acks.flush()
        except Exception as exc:
            await self._give_back(delivery.message, exc)
        finally:
            self._finished()

    async def _change(self, batch: list[Delivery]) -> None:
        """A batch of changes: applied at once, replies published together, one multiple ack."""
        try:
            results = await self._apply(batch)
            replying = [(i, d.message, r) for i, (d, r) in enumerate(zip(batch, results, strict=True))
                        if isinstance(r, Outcome) and d.message.reply_to]
            sent = await asyncio.gather(*(self._reply(m, r.status_code, r.reply) for _, m, r in replying),
                                        return_exceptions=True)
            reply_errors = {i: error for (i, _, _), error in zip(replying, sent, strict=True)}
            for i, (delivery, result) in enumerate(zip(batch, results, strict=True)):
                failed = reply_errors.get(i)
                try:
                    if isinstance(result, Exception):
                        await self._on_failure(delivery, result)
                    elif isinstance(failed, BaseException):
                        await self._give_back(delivery.message, failed)
                    else:
                        self._handled(delivery, result)
                        self._acks.settled(delivery.message)
                except Exception as exc:
                    await self._give_back(delivery.message, exc)
            await self._acks.flush()
        except Exception as exc:
            for delivery in batch:
                await self._give_back(delivery.message, exc)
        finally:
            self._finished(len(batch))

    async def _apply(self, batch: list[Delivery]) -> list[Outcome | Exception]:
        """Run the batch until the database takes it; a bug fails only the command that has it."""
        delay = 0.05
        while True:
            try:
                return list(await self._service.change([d.request for d in batch]))
            except TRANSIENT_ERRORS as exc:
                # Database trouble: hold the whole batch and try again; never give up on it.
                log.warning("database unavailable; holding the messages", error=type(exc).__name__,
                            messages=len(batch), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception as exc:
                if len(batch) == 1:
                    return [exc]
                # One command is broken: apply the others one by one so only it fails.
                return [result for delivery in batch for result in await self._apply([delivery])]

    # ---- settling --------------------------------------------------------------------------

    def _handled(self, delivery: Delivery, outcome: Outcome) -> None:
        message, cmd = delivery.message, delivery.request.command
        label = "replayed" if outcome.replayed else str(outcome.status_code)
        metrics.COMMANDS.labels(cmd.command, label).inc()
        metrics.HANDLING.labels(cmd.command).observe(time.perf_counter() - delivery.started)
        log.info(  # one call, no bound logger: this runs for every command
            "command handled", message_id=message.message_id, correlation_id=message.correlation_id,
            command=cmd.command, customer_id=str(cmd.customer_id),
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
        """Settling failed: return the message to the queue; its redelivery repeats the same reply."""
        if not self._acks.pending(message):
            return  # settled already, or from a channel that is gone
        if isinstance(exc, TRANSIENT_ERRORS):
            log.warning("message left for redelivery", message_id=message.message_id,
                        error=type(exc).__name__, detail=str(exc))
        else:
            log.error("could not settle the message; returning it to the queue",
                      message_id=message.message_id, exc_info=exc)
        with contextlib.suppress(Exception):
            await message.reject(requeue=True)
            self._acks.settled(message, ack=False)  # only once the reject is on its way

    async def _on_failure(self, delivery: Delivery, exc: Exception) -> None:
        message, bound = delivery.message, _logger(delivery)
        deliveries = _delivery_count(message) + 1
        if deliveries < self._settings.retry_limit:
            bound.error("handler failed; redelivering", delivery=deliveries, exc_info=exc,
                        duration_ms=_ms(delivery.started))
            await message.reject(requeue=True)
            self._acks.settled(message, ack=False)
            return
        text = f"{type(exc).__name__}: {exc}"
        reply = Reply(
            status_code=500,
            error=ErrorInfo(
                status=replies.INTERNAL, reason=replies.INTERNAL_ERROR,
                message="the command failed inside the worker and was set aside for inspection",
            ),
        )
        await self._reply(message, 500, reply.to_json())
        await self._dead_letter(
            message, replies.INTERNAL, replies.INTERNAL_ERROR, text,
            extra={"x-exception-class": type(exc).__name__, "x-exception-message": str(exc)[:1000],
                   "x-deliveries": deliveries},
        )
        self._acks.settled(message)
        await self._acks.flush()
        metrics.COMMANDS.labels(delivery.request.command.command, "500").inc()
        metrics.DEAD_LETTERED.labels(replies.INTERNAL_ERROR).inc()
        bound.error("command dead-lettered after repeated failures", outcome=replies.INTERNAL_ERROR,
                    delivery=deliveries, exc_info=exc, duration_ms=_ms(delivery.started))

    async def _reply(self, message: Incoming, status_code: int, body: bytes) -> None:
        if not message.reply_to:
            return
        reply = aio_pika.Message(
            body,
            content_type="application/json",
            correlation_id=message.correlation_id or message.message_id,
            headers={"status_code": status_code},
        )
        await self._publisher.default_exchange.publish(reply, routing_key=message.reply_to, mandatory=False)

    async def _dead_letter(
        self, message: Incoming, status: str, reason: str, text: str,
        extra: dict[str, object] | None = None,
    ) -> None:
        headers = dict(message.headers or {})
        headers.update({
            "x-error-status": status,
            "x-error-reason": reason,
            "x-error-message": text[:1000],
            "x-original-exchange": message.exchange or "",
            "x-original-routing-key": message.routing_key or "",
        })
        headers.update(extra or {})
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            reply_to=message.reply_to,
            timestamp=message.timestamp,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        exchange: AbstractExchange = await self._publisher.get_exchange(
            self._settings.dead_letter_exchange, ensure=False
        )
        await exchange.publish(copy, routing_key=message.routing_key or "", mandatory=False)


def _logger(delivery: Delivery) -> structlog.typing.FilteringBoundLogger:
    message, cmd = delivery.message, delivery.request.command
    return log.bind(message_id=message.message_id, correlation_id=message.correlation_id,  # type: ignore[no-any-return]
                    command=cmd.command, customer_id=str(cmd.customer_id))


def _delivery_count(message: Incoming) -> int:
    value = (message.headers or {}).get("x-delivery-count", 0)
    return value if isinstance(value, int) else 0


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
