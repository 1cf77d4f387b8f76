"""A worker started through its console script, on names of its own, and clients to drive it."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from tests.conftest import AMQP_URL
from tests.support.workers import WorkerProcess, delete_names, start_worker
from worker.client import OutplanClient

__all__ = ["Collector", "WorkerProcess"]


@pytest.fixture(scope="session")
def worker(session_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker for the session; tests keep apart by using fresh customer ids."""
    running = start_worker(session_database, tmp_path_factory.mktemp("worker"))
    yield running
    code = running.stop()
    asyncio.run(delete_names(running.names))
    assert code == 0, running.log()


@dataclass
class Collector:
    """Everything that reaches one exclusive queue, in arrival order."""

    messages: list[AbstractIncomingMessage] = field(default_factory=list)
    task: asyncio.Task[None] | None = None  # the loop of a collector that takes one message at a time

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)

    def bodies(self, **match: str) -> list[dict[str, Any]]:
        found = [json.loads(m.body) for m in self.messages]
        return [b for b in found if all(b.get(k) == v for k, v in match.items())]

    async def wait_for(self, count: int, seconds: float = 10, **match: str) -> list[dict[str, Any]]:
        async with asyncio.timeout(seconds):
            while len(self.bodies(**match)) < count:
                await asyncio.sleep(0.02)
        return self.bodies(**match)

    async def wait_for_message(
        self, message_id: str | None = None, seconds: float = 10, *, correlation_id: str | None = None
    ) -> AbstractIncomingMessage:
        """The first message with this ``message_id`` (or, when given, ``correlation_id``)."""
        async with asyncio.timeout(seconds):
            while True:
                for message in self.messages:
                    if (
                        message.correlation_id == correlation_id
                        if correlation_id is not None
                        else message.message_id == message_id
                    ):
                        return message
                await asyncio.sleep(0.02)


@pytest.fixture
async def connection() -> AsyncIterator[AbstractRobustConnection]:
    conn = await aio_pika.connect_robust(AMQP_URL)
    yield conn
    await conn.close()


@pytest.fixture
async def client(worker: WorkerProcess, connection: AbstractRobustConnection) -> OutplanClient:
    client = OutplanClient(connection, exchange=worker.names.command_exchange)
    await client.start()
    return client


async def _collect(connection: AbstractRobustConnection, exchange: str, routing_key: str) -> Collector:
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key=routing_key)
    collector = Collector()
    await queue.consume(collector, no_ack=True)
    return collector


@pytest.fixture
async def events(worker: WorkerProcess, connection: AbstractRobustConnection) -> Collector:
    return await _collect(connection, worker.names.event_exchange, "#")


@pytest.fixture
async def dead_letters(worker: WorkerProcess, connection: AbstractRobustConnection) -> Collector:
    return await _collect(connection, worker.names.dead_letter_exchange, "")
