"""Carrying out how a command delivery ends: its reply, its dead-letter copy, then ack or requeue.

What is done is decided by one pure function, ``settlement.decide``, from what happened to the
delivery, its number as the broker counts it (``settlement.delivery_number``) and
``OUTPLAN_RETRY_LIMIT``. A :class:`Settler` reports what happened and carries the decision out:
it publishes the reply and the dead-letter copy (``Outgoing``), and when one of them was not
published it asks the policy again (``PUBLISH_REFUSED``, ``PUBLISH_INTERRUPTED``). Then it acks
the delivery, gathered with others into one multiple ack (``AckTracker``, sent by
:meth:`Settler.flush`), or requeues it at once with ``basic.reject(requeue=True)`` (AMQP 0-9-1),
and the broker counts the redelivery (``x-delivery-count`` on a quorum queue).

Each command that ends is logged here in one line, and counted (``outplan_commands_total``,
``outplan_dead_lettered_total``, ``outplan_command_duration_seconds``; a publish that failed in
``outplan_replies_failed_total`` or ``outplan_dead_letters_failed_total``).
"""

import time
from collections.abc import Coroutine
from dataclasses import dataclass

import structlog

from contracts import ErrorInfo, Reply, replies

from .. import refusals
from ..observability import metrics
from ..observability.spans import CommandTrace, Peer
from ..requests import Rejection, Request
from ..service import Outcome
from ..transient import TRANSIENT_ERRORS
from .acks import AckTracker
from .incoming import Incoming
from .outgoing import Outgoing, PublishRefused
from .settlement import Disposition, Happened, Settle, decide, delivery_number

# The consumer's lines: they keep the logger name they always had.
log: structlog.typing.FilteringBoundLogger = structlog.get_logger("outplan_worker.consumer")


@dataclass(slots=True)
class Decoded:
    """A delivery decoded into a valid request, when it arrived (``time.perf_counter()``, s), and
    its trace (the process span, or the incoming context)."""

    message: Incoming
    request: Request
    started: float
    trace: CommandTrace

    def logger(self) -> structlog.typing.FilteringBoundLogger:
        """The consumer's log bound to this command: message and correlation ids, command, customer."""
        message, cmd = self.message, self.request.command
        return log.bind(
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            command=cmd.command,
            customer_id=str(cmd.customer_id),
        )


class Settler:
    """Ends command deliveries as ``settlement.decide`` says, for one consumer's channel.

    ``outgoing`` publishes the replies and dead-letter copies; ``retry_limit`` is the number of
    deliveries a failing command gets (``OUTPLAN_RETRY_LIMIT``, >= 1). Every delivery is noted
    with :meth:`received` as it arrives, in tag order; acks go out at :meth:`flush`.
    """

    def __init__(self, outgoing: Outgoing, retry_limit: int, broker: Peer | None = None) -> None:
        self._outgoing = outgoing  # replies and dead-letter copies, on a connection of their own
        self._limit = retry_limit
        self._acks = AckTracker()
        self._broker = broker or Peer()  # for the reply spans' server.address and server.port

    def received(self, message: Incoming) -> None:
        """Note a delivery as it arrives, before anything settles it."""
        self._acks.received(message)

    async def flush(self) -> None:
        """Send one multiple ack for the deliveries acked so far (a broken link: none, not raised)."""
        await self._acks.flush()

    async def reject(
        self, message: Incoming, rejection: Rejection, started: float, trace: CommandTrace
    ) -> None:
        """Invalid input: answered 400 and dead-lettered with the reason on its first delivery, acked at once.

        ``started`` is when it arrived (``time.perf_counter()``, s); ``trace`` the delivery's, current
        meanwhile and ended here. Raises only on a bug here.
        """
        with trace.active():
            await self._reject(message, rejection, started, trace)
        trace.finish(command=rejection.command, status_code=rejection.status_code, error_type=None)

    async def _reject(
        self, message: Incoming, rejection: Rejection, started: float, trace: CommandTrace
    ) -> None:
        number = delivery_number(message.headers, message.redelivered)
        await self._carry_out(
            message,
            decide(Happened.INVALID, number, self._limit),
            number,
            reply=(rejection.status_code, rejection.reply().to_json()),
            dead_letter=_DeadLetter(rejection.status, rejection.reason, rejection.message),
            trace=trace,
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

    async def conclude(self, decoded: Decoded, result: Outcome | Exception) -> None:
        """Settle a command that ran: its outcome, or the exception its handler raised (a bug).

        An outcome is answered and acked; a bug is requeued until the retry limit, then answered
        500 and dead-lettered with the exception. Acks wait for :meth:`flush`. The command's trace
        is current meanwhile, and its process span ends here. Raises only on a bug here.
        """
        with decoded.trace.active():
            status_code, error_type = await self._conclude(decoded, result)
        decoded.trace.finish(
            command=decoded.request.command.command, status_code=status_code, error_type=error_type
        )

    async def _conclude(self, decoded: Decoded, result: Outcome | Exception) -> tuple[int | None, str | None]:
        """Settle as ``conclude`` says; the reply's status code (None: requeued) and the error, if any."""
        message = decoded.message
        number = delivery_number(message.headers, message.redelivered)
        if isinstance(result, Outcome):
            await self._carry_out(
                message,
                decide(Happened.HANDLED, number, self._limit),
                number,
                reply=(result.status_code, result.reply),
                trace=decoded.trace,
            )
            self._handled(decoded, result)
            return result.status_code, None
        disposition = decide(Happened.FAILED, number, self._limit)
        bound = decoded.logger()
        if disposition.settle is Settle.REQUEUE:
            bound.error(
                "handler failed; redelivering",
                delivery=number,
                exc_info=result,
                duration_ms=_ms(decoded.started),
            )
            await self._carry_out(message, disposition, number)
            return None, type(result).__name__
        await self._carry_out(
            message,
            disposition,
            number,
            reply=(500, INTERNAL_REPLY),
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
            trace=decoded.trace,
        )
        metrics.COMMANDS.labels(decoded.request.command.command, "500").inc()
        metrics.DEAD_LETTERED.labels(replies.INTERNAL_ERROR).inc()
        bound.error(
            "command dead-lettered after repeated failures",
            outcome=replies.INTERNAL_ERROR,
            delivery=number,
            exc_info=result,
            duration_ms=_ms(decoded.started),
        )
        return 500, type(result).__name__

    async def give_back(self, message: Incoming, exc: BaseException) -> None:
        """Settling itself failed (a bug here): return the message; its redelivery repeats the same reply.

        Nothing is done for a delivery already settled, or from a channel that is gone. Outside the
        settlement policy and its retry limit: the queue's ``x-delivery-limit`` is the backstop.
        """
        if not self._acks.pending(message):
            return
        log.error(
            "could not settle the message; returning it to the queue",
            message_id=message.message_id,
            exc_info=exc,
        )
        await self._requeue(message)

    async def _carry_out(
        self,
        message: Incoming,
        disposition: Disposition,
        number: int,
        *,
        reply: tuple[int, bytes] | None = None,
        dead_letter: "_DeadLetter | None" = None,
        trace: CommandTrace | None = None,
    ) -> None:
        """Reply, dead-letter and settle as ``disposition`` says; a failed publish is decided on again."""
        failed: list[Happened] = []
        if disposition.reply and reply is not None:
            failed += await self._publishing(
                "reply", message, self._outgoing.reply(message, *reply, trace=trace, peer=self._broker)
            )
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
            disposition = decide(worst, number, self._limit)
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
            # RabbitMQ checks a publish to the default exchange as one to "amq.default".
            exchange = "amq.default" if what == "reply" else self._outgoing.dead_letter_exchange
            target = f"exchange {exchange!r}"
            if refusals.report(refusals.broker_refusal(exc, "basic.publish", target)):
                return [happened]  # requeued: the worker stops, reported once
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

    def _handled(self, decoded: Decoded, outcome: Outcome) -> None:
        message, cmd = decoded.message, decoded.request.command
        label = "replayed" if outcome.replayed else str(outcome.status_code)
        metrics.COMMANDS.labels(cmd.command, label).inc()
        metrics.HANDLING.labels(cmd.command).observe(time.perf_counter() - decoded.started)
        log.info(  # one call, no bound logger: this runs for every command
            "command handled",
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            command=cmd.command,
            customer_id=str(cmd.customer_id),
            outplan_id=str(outcome.outplan_id) if outcome.outplan_id else None,
            outcome="replayed" if outcome.replayed else outcome.status_code,
            duration_ms=_ms(decoded.started),
        )


@dataclass(frozen=True, slots=True)
class _DeadLetter:
    status: str
    reason: str
    text: str
    extra: dict[str, object] | None = None


INTERNAL_REPLY: bytes = Reply(
    status_code=500,
    error=ErrorInfo(
        status=replies.INTERNAL,
        reason=replies.INTERNAL_ERROR,
        message="the command failed inside the worker and was set aside for inspection",
    ),
).to_json()
"""The reply (JSON bytes) to a command dead-lettered after repeated failures: 500 ``INTERNAL_ERROR``,
with no internals (those go in the dead letter's ``x-exception-*`` headers)."""


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
