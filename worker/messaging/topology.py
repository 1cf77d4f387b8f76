"""The worker's exchanges, queues and bindings: declared at start, or only checked (passive).

``plan(settings)`` is the topology as data, the one description that declaring, checking,
comparing with the management API (``management.py``) and the shipped broker definitions
(``deploy/rabbitmq/definitions.json``, checked against it by a test) all read.

With ``OUTPLAN_TOPOLOGY=declare`` (the default) the worker declares everything, which needs the
``configure`` permission. With ``passive`` an operator has declared the topology beforehand
(definitions imported, or an administrator's declarations) and the worker only checks it:
exchanges and queues by a passive declare, which over AMQP proves that they exist and nothing
more (AMQP 0-9-1 ``exchange.declare``/``queue.declare``, ``passive`` bit), and bindings by
``queue.bind`` again, which is idempotent and needs ``write`` on the queue and ``read`` on the
exchange, not ``configure`` (RabbitMQ "Access Control"). Whatever the broker refuses here
(a permission, an entity that does not exist, arguments that differ) is ``Misconfigured``.
"""

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from contracts import COMMANDS

from ..refusals import Misconfigured, broker_refusal
from ..settings import Settings

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """An exchange: its name and type (``direct``, ``fanout``, ``topic``); all are durable."""

    name: str
    type: str
    durable: bool = True


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A durable queue and the ``x-`` arguments it is declared with."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    durable: bool = True


@dataclass(frozen=True, slots=True)
class BindingSpec:
    """A binding of ``queue`` to ``exchange`` with ``routing_key``."""

    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The whole topology, in the order it is declared: exchanges, queues, bindings."""

    exchanges: tuple[ExchangeSpec, ...]
    queues: tuple[QueueSpec, ...]
    bindings: tuple[BindingSpec, ...]


def plan(settings: Settings) -> Plan:
    """The topology the settings name: the command exchange (direct) bound to the command queue
    (quorum) with every command name (``contracts.COMMANDS``), the dead-letter exchange (fanout)
    and queue (quorum), and the event exchange (topic), which the worker binds nothing to.

    Arguments of an existing queue must not change: RabbitMQ refuses a re-declaration whose
    arguments differ (channel error 406 ``PRECONDITION_FAILED``); use a policy for what should change.
    """
    return Plan(
        exchanges=(
            ExchangeSpec(settings.dead_letter_exchange, "fanout"),
            ExchangeSpec(settings.command_exchange, "direct"),
            ExchangeSpec(settings.event_exchange, "topic"),
        ),
        queues=(
            QueueSpec(settings.dead_letter_queue, {"x-queue-type": "quorum"}),
            QueueSpec(
                settings.command_queue,
                {
                    "x-queue-type": "quorum",
                    "x-dead-letter-exchange": settings.dead_letter_exchange,
                    # A backstop for messages that crash the process itself; handler failures are
                    # dead-lettered by the worker (with reasons) well before this.
                    "x-delivery-limit": settings.queue_delivery_limit,
                },
            ),
        ),
        bindings=(
            BindingSpec(settings.dead_letter_exchange, settings.dead_letter_queue, ""),
            *(BindingSpec(settings.command_exchange, settings.command_queue, name) for name in COMMANDS),
        ),
    )


@dataclass(frozen=True, slots=True)
class Topology:
    """What ``declare`` declared (or checked): the command exchange (direct) and queue (quorum),
    the dead-letter exchange (fanout) and queue (quorum), and the event exchange (topic)."""

    commands: AbstractExchange
    command_queue: AbstractQueue
    dead_letters: AbstractExchange
    dead_letter_queue: AbstractQueue
    events: AbstractExchange


async def _checked(operation: str, resource: str, passive: bool, step: Awaitable[T]) -> T:
    """Await ``step`` (``operation`` on ``resource``); what the broker refuses for good is raised
    as ``Misconfigured`` naming both, anything else unchanged."""
    try:
        return await step
    except aiormq.exceptions.ChannelAccessRefused as exc:
        refused = broker_refusal(exc, operation, resource)
        assert refused is not None
        raise refused from None
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        how = (
            "OUTPLAN_TOPOLOGY=passive checks the topology and never creates it: import"
            " deploy/rabbitmq/definitions.json or have an administrator declare it"
            if passive
            else "declare it, or fix its name in the settings"
        )
        raise Misconfigured(f"RabbitMQ: {resource} does not exist ({exc.args[0]}); {how}") from None
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise Misconfigured(
            f"RabbitMQ refused {operation} on {resource}: it exists with other properties"
            f" ({exc.args[0]}); delete it, or change it with a policy and keep the declaration as it is"
        ) from None


async def declare(channel: AbstractChannel, settings: Settings) -> Topology:
    """Declare the topology of ``plan(settings)`` (or, with ``settings.topology == "passive"``,
    check that its exchanges and queues exist), bind the queues, and return them.

    :raises Misconfigured: the broker refused an operation (``ACCESS_REFUSED``: the line names the
        permission), a passive declare found nothing (``NOT_FOUND``), or an existing entity has
        other arguments (``PRECONDITION_FAILED``). The channel is closed then.
    """
    passive = settings.topology == "passive"
    topology = plan(settings)
    exchanges: dict[str, AbstractExchange] = {}
    for x in topology.exchanges:
        exchanges[x.name] = await _checked(
            "exchange.declare",
            f"exchange {x.name!r}",
            passive,
            channel.declare_exchange(
                x.name, aio_pika.ExchangeType(x.type), durable=x.durable, passive=passive
            ),
        )
    queues: dict[str, AbstractQueue] = {}
    for q in topology.queues:
        queues[q.name] = await _checked(
            "queue.declare",
            f"queue {q.name!r}",
            passive,
            channel.declare_queue(
                q.name, durable=q.durable, arguments=None if passive else q.arguments, passive=passive
            ),
        )
    for b in topology.bindings:
        await _checked(
            "queue.bind",
            f"queue {b.queue!r} and exchange {b.exchange!r}",
            passive,
            queues[b.queue].bind(exchanges[b.exchange], routing_key=b.routing_key),
        )
    return Topology(
        exchanges[settings.command_exchange],
        queues[settings.command_queue],
        exchanges[settings.dead_letter_exchange],
        queues[settings.dead_letter_queue],
        exchanges[settings.event_exchange],
    )
