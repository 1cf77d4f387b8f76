"""How a command delivery ends: one pure decision from what happened to it.

The consumer reports what happened (:class:`Happened`) and this delivery's number as the
broker counts it; :func:`decide` says whether to reply, whether to dead-letter a copy with the
reason, and how to settle the delivery. The consumer only carries that out. The rules:

- a handled command (2xx, or a domain refusal such as 404 or 409) is answered and acked;
- invalid input is answered 400, dead-lettered with its reason and acked: never requeued,
  since it would be just as invalid the next time;
- infrastructure trouble (the database or the broker unavailable) is held and retried in the
  process: the command is neither answered nor dead-lettered for it;
- a handler bug is requeued until the delivery ``limit`` (``OUTPLAN_RETRY_LIMIT``), then
  answered 500, dead-lettered with the exception and acked;
- a reply or dead-letter copy the broker refused (a ``basic.nack``, headers that cannot be
  encoded) does not undo the outcome: the delivery is acked and the failure counted;
- a reply or dead-letter copy cut off by a broken link is requeued, so the redelivery sends
  it again (a change's stored reply is replayed), until the limit; then acked and counted.

Only the broker's count counts (:func:`delivery_number`): RabbitMQ's quorum queues set
``x-delivery-count`` on a *redelivered* message, and on a first delivery a value the publisher
set passes through unchanged (seen on RabbitMQ 3.10: a publisher can forge it). Modelled on FastStream's
acknowledgement policy and arq's retry handling: a decision table, unit-tested as one.
"""

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class Happened(enum.Enum):
    """What happened to a delivery, as the consumer saw it."""

    HANDLED = "handled"  # a reply was produced: success, a replayed reply, or a domain refusal
    INVALID = "invalid"  # refused before any handler ran (undecodable, invalid, unknown command)
    FAILED = "failed"  # the handler raised something that is not infrastructure trouble
    UNAVAILABLE = "unavailable"  # the database or the broker is unavailable: wait and retry
    PUBLISH_REFUSED = "publish_refused"  # the reply or dead-letter copy was refused for good
    PUBLISH_INTERRUPTED = "publish_interrupted"  # the link broke while publishing it


class Settle(enum.Enum):
    """What becomes of the delivery itself."""

    ACK = "ack"  # done: taken off the queue
    REQUEUE = "requeue"  # basic.reject(requeue=True): delivered again, counted by the broker
    RETRY_HERE = "retry_here"  # kept and retried in the process after a backoff; nothing sent


@dataclass(frozen=True, slots=True)
class Disposition:
    """What to do: send the reply, publish a dead-letter copy, then settle the delivery."""

    settle: Settle
    reply: bool = False
    dead_letter: bool = False


ANSWER = Disposition(Settle.ACK, reply=True)
ANSWER_AND_DEAD_LETTER = Disposition(Settle.ACK, reply=True, dead_letter=True)
REQUEUE = Disposition(Settle.REQUEUE)
RETRY_HERE = Disposition(Settle.RETRY_HERE)
ACK = Disposition(Settle.ACK)


def decide(happened: Happened, delivery: int, limit: int) -> Disposition:
    """The disposition of a delivery.

    :param happened: what happened to it.
    :param delivery: this delivery's number, 1 for the first (:func:`delivery_number`).
    :param limit: deliveries a failing command gets before it is given up (>= 1).
    """
    match happened:
        case Happened.HANDLED:
            return ANSWER
        case Happened.INVALID:
            return ANSWER_AND_DEAD_LETTER
        case Happened.UNAVAILABLE:
            return RETRY_HERE
        case Happened.FAILED:
            return REQUEUE if delivery < limit else ANSWER_AND_DEAD_LETTER
        case Happened.PUBLISH_REFUSED:
            return ACK
        case Happened.PUBLISH_INTERRUPTED:
            return REQUEUE if delivery < limit else ACK
    raise AssertionError(happened)


def delivery_number(headers: Mapping[str, object], redelivered: bool) -> int:
    """This delivery's number as the broker counts it: 1 + ``x-delivery-count`` on a redelivery.

    A first delivery (``redelivered`` false) is 1 whatever its headers say; a redelivery
    without a usable count is taken as the second.
    """
    if not redelivered:
        return 1
    count = headers.get("x-delivery-count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
        return count + 1
    return 2
