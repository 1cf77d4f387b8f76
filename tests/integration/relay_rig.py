"""A relay on a fresh database and a topic exchange of its own, and subscriber queues to watch it."""

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from pydantic import SecretStr

from tests.conftest import AMQP_URL
from worker.messaging.relay import Relay
from worker.messaging.window import RetryPolicy
from worker.settings import Settings


@dataclass
class Subscriber:
    """What one subscriber queue received, in arrival order."""

    queue: AbstractQueue
    messages: list[AbstractIncomingMessage] = field(default_factory=list)

    async def keep(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)

    def sequences(self) -> list[int]:
        return [int(json.loads(m.body)["eventsequence"]) for m in self.messages]

    def copies(self) -> dict[int, int]:
        """How many times each ``eventsequence`` arrived."""
        counted: dict[int, int] = defaultdict(int)
        for sequence in self.sequences():
            counted[sequence] += 1
        return dict(counted)

    def versions_by_outplan(self) -> dict[str, list[int]]:
        """Each outplan's ``outplanversion``s in arrival order."""
        found: dict[str, list[int]] = defaultdict(list)
        for message in self.messages:
            body = json.loads(message.body)
            found[body["subject"]].append(body["outplanversion"])
        return dict(found)

    async def wait_for(self, count: int, seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while len(self.messages) < count:
                await asyncio.sleep(0.02)


@dataclass
class Rig:
    settings: Settings
    pool: asyncpg.Pool
    connection: AbstractRobustConnection
    received: list[AbstractIncomingMessage]
    exchange_name: str
    #: The relays' channels: referenced here for as long as the test runs, as the worker does.
    relay_channels: list[AbstractChannel] = field(default_factory=list)

    async def bind_queue(self) -> AbstractQueue:
        """A ``#`` queue whose messages land in ``received``."""
        channel = await self.connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(self.exchange_name, routing_key="#")

        async def keep(message: AbstractIncomingMessage) -> None:
            self.received.append(message)

        await queue.consume(keep, no_ack=True)
        return queue

    async def subscribe(
        self, routing_key: str = "#", *, consume: bool = True, arguments: dict[str, Any] | None = None
    ) -> Subscriber:
        """An exclusive queue bound with ``routing_key``; consumed (no ack) unless ``consume`` is False."""
        channel = await self.connection.channel()
        queue = await channel.declare_queue(exclusive=True, arguments=arguments)
        await queue.bind(self.exchange_name, routing_key=routing_key)
        subscriber = Subscriber(queue)
        if consume:
            await queue.consume(subscriber.keep, no_ack=True)
        return subscriber

    async def relay(self, retry: RetryPolicy | None = None) -> tuple[Relay, asyncio.Task[None]]:
        """A relay on a confirm channel of its own, as the worker opens it."""
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=False)
        self.relay_channels.append(channel)
        relay = Relay(self.settings, channel, retry=retry)
        return relay, asyncio.create_task(relay.run())

    async def leading(self, *relays: Relay) -> Relay:
        """The relay among these that took the lock, once one has."""
        async with asyncio.timeout(10):
            while not any(r.is_leader for r in relays):
                await asyncio.sleep(0.02)
        return next(r for r in relays if r.is_leader)

    async def wait_for(self, count: int, seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while len(self.received) < count:
                await asyncio.sleep(0.02)

    async def checkpoint(self) -> int:
        return int(await self.pool.fetchval("SELECT published_through FROM outbox_state"))

    async def last_sequence(self) -> int:
        return int(await self.pool.fetchval("SELECT coalesce(max(eventsequence), 0) FROM outplan_events"))

    async def settled(self, seconds: float = 20.0) -> None:
        """Until the checkpoint reaches the last event in the log."""
        async with asyncio.timeout(seconds):
            while await self.checkpoint() < await self.last_sequence():
                await asyncio.sleep(0.05)


@pytest.fixture
async def rig(fresh_database: str) -> AsyncIterator[Rig]:
    exchange_name = f"test.events.{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=SecretStr(fresh_database),
        event_exchange=exchange_name,
        relay_poll_seconds=0.2,
    )
    pool = await asyncpg.create_pool(fresh_database, min_size=1, max_size=4)
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
    yield Rig(settings, pool, connection, [], exchange_name)
    await exchange.delete()
    await connection.close()
    await pool.close()
