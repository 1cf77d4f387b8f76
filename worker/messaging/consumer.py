"""The command consumer: decode, execute, reply, then settle each message in one place.

How a message ends is decided here from what happened to it:
- invalid input: 400 reply, dead-lettered with ``x-error-*`` headers, acked (never requeued);
- infrastructure trouble: held and retried until it goes through (never dead-lettered);
- a handler bug: rejected for redelivery until ``retry_limit`` deliveries, then 500 reply
  and dead-lettered with the exception's class and message.
"""

import asyncio
import contextlib
import time

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue

from contracts import ErrorInfo, Reply, replies

from ..batching import Batcher
from ..observability import metrics
from ..requests import Rejection, Request, decode
from ..service import Outcome, Service
from ..settings import Settings
from ..transient import TRANSIENT_ERRORS

log = structlog.get_logger("outplan_worker.consumer")


class CommandConsumer:
    def __init__(self, settings: Settings, service: Service, publisher: AbstractChannel) -> None:
        self._settings = settings
        self._service = service
        self._batcher = Batcher(service, size=settings.batch_size, writers=settings.batch_writers)
        self._publisher = publisher  # confirm-mode channel for replies and dead letters
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.handled = 0

    @property
    def attached(self) -> bool:
        """Consuming now: a consumer tag on a channel that is open (robust channels restore it)."""
        channel = self._queue.channel if self._queue is not None else None
        return self._tag is not None and channel is not None and not channel.is_closed

    async def start(self, queue: AbstractQueue) -> None:
        self._batcher.start()
        self._queue = queue
        self._tag = await queue.consume(self.on_message)

    async def stop(self) -> None:
        """Stop taking new messages; those in flight carry on."""
        if self._queue is not None and self._tag is not None:
            tag, self._tag = self._tag, None
            try:
                await self._queue.cancel(tag)
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

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._handle(message)
        finally:
            self._in_flight -= 1
            self.handled += 1
            if self._in_flight == 0:
                self._idle.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        bound = log.bind(message_id=message.message_id, correlation_id=message.correlation_id)
        decoded = decode(
            message.body,
            content_type=message.content_type,
            routing_key=message.routing_key,
            type_=message.type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
        )
        try:
            if isinstance(decoded, Rejection):
                await self._reply(message, decoded.status_code, decoded.reply().to_json())
                await self._dead_letter(message, decoded.status, decoded.reason, decoded.message)
                await message.ack()
                metrics.COMMANDS.labels(decoded.command or "unknown", decoded.reason).inc()
                metrics.DEAD_LETTERED.labels(decoded.reason).inc()
                bound.warning(
                    "command rejected", command=decoded.command, outcome=decoded.reason,
                    error=decoded.message, duration_ms=_ms(started),
                )
                return
            cmd = decoded.command
            bound = bound.bind(command=cmd.command, customer_id=str(cmd.customer_id))
            try:
                outcome = await self._execute(decoded, bound)
            except TRANSIENT_ERRORS:
                raise
            except Exception as exc:  # a bug: bounded redelivery, then dead-lettered
                await self._on_failure(message, exc, bound, started)
                return
            await self._reply(message, outcome.status_code, outcome.reply)
            await message.ack()
            metrics.COMMANDS.labels(cmd.command, "replayed" if outcome.replayed else str(outcome.status_code)).inc()
            metrics.HANDLING.labels(cmd.command).observe(time.perf_counter() - started)
            bound.info(
                "command handled",
                outplan_id=str(outcome.outplan_id) if outcome.outplan_id else None,
                outcome="replayed" if outcome.replayed else outcome.status_code,
                duration_ms=_ms(started),
            )
        except TRANSIENT_ERRORS as exc:
            # The broker link broke mid-way: not acked, so the broker redelivers it and the
            # idempotency record makes the redelivery answer the same reply.
            bound.warning("message left for redelivery", error=type(exc).__name__, detail=str(exc))
        except Exception as exc:  # settling itself failed: hand the message back rather than strand it
            bound.error("could not settle the message; returning it to the queue", exc_info=exc)
            with contextlib.suppress(Exception):
                await message.reject(requeue=True)

    async def _execute(self, request: Request, bound: structlog.typing.FilteringBoundLogger) -> Outcome:
        if request.command.mutates:
            return await self._batcher.submit(request)
        delay = 0.05
        while True:
            try:
                return await self._service.query(request)
            except TRANSIENT_ERRORS as exc:
                bound.warning("database unavailable; holding the message", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _on_failure(
        self, message: AbstractIncomingMessage, exc: Exception, bound: structlog.typing.FilteringBoundLogger,
        started: float,
    ) -> None:
        deliveries = _delivery_count(message) + 1
        if deliveries < self._settings.retry_limit:
            bound.error("handler failed; redelivering", delivery=deliveries, exc_info=exc, duration_ms=_ms(started))
            await message.reject(requeue=True)
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
        await message.ack()
        metrics.COMMANDS.labels(message.type or message.routing_key or "unknown", "500").inc()
        metrics.DEAD_LETTERED.labels(replies.INTERNAL_ERROR).inc()
        bound.error("command dead-lettered after repeated failures", outcome=replies.INTERNAL_ERROR,
                    delivery=deliveries, exc_info=exc, duration_ms=_ms(started))

    async def _reply(self, message: AbstractIncomingMessage, status_code: int, body: bytes) -> None:
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
        self, message: AbstractIncomingMessage, status: str, reason: str, text: str,
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
            headers=headers,  # type: ignore[arg-type]
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


def _delivery_count(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get("x-delivery-count", 0)
    return value if isinstance(value, int) else 0


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
