"""Declare the worker's exchanges and queues (idempotent: safe on every start)."""

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from contracts import COMMANDS

from ..settings import Settings


@dataclass(frozen=True, slots=True)
class Topology:
    """What ``declare`` declared: the command exchange (direct) and queue (quorum), the dead-letter
    exchange (fanout) and queue (quorum), and the event exchange (topic)."""

    commands: AbstractExchange
    command_queue: AbstractQueue
    dead_letters: AbstractExchange
    dead_letter_queue: AbstractQueue
    events: AbstractExchange


async def declare(channel: AbstractChannel, settings: Settings) -> Topology:
    """Declare the exchanges and queues the settings name, bind the command queue to every command
    name (``contracts.COMMANDS``), and return them.

    Arguments of an existing queue must not change: RabbitMQ refuses a re-declaration whose
    arguments differ (channel error 406 ``PRECONDITION_FAILED``), which aio-pika raises as
    ``aiormq.exceptions.ChannelPreconditionFailed``; use a policy for what should change.
    """
    dead_letters = await channel.declare_exchange(
        settings.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_letter_queue = await channel.declare_queue(
        settings.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_letter_queue.bind(dead_letters, routing_key="")
    commands = await channel.declare_exchange(
        settings.command_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    command_queue = await channel.declare_queue(
        settings.command_queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": settings.dead_letter_exchange,
            # A backstop for messages that crash the process itself; handler failures are
            # dead-lettered by the worker (with reasons) well before this.
            "x-delivery-limit": settings.queue_delivery_limit,
        },
    )
    for name in COMMANDS:
        await command_queue.bind(commands, routing_key=name)
    events = await channel.declare_exchange(
        settings.event_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    return Topology(commands, command_queue, dead_letters, dead_letter_queue, events)
