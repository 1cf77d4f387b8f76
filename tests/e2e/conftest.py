"""A worker started through its console script, on names of its own, and clients to drive it."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from tests.conftest import AMQP_URL
from worker.client import OutplanClient


@dataclass
class WorkerNames:
    command_exchange: str
    command_queue: str
    dead_letter_exchange: str
    dead_letter_queue: str
    event_exchange: str

    @classmethod
    def fresh(cls) -> "WorkerNames":
        s = uuid.uuid4().hex[:8]
        return cls(f"test-{s}.commands", f"test-{s}.worker.commands", f"test-{s}.dlx",
                   f"test-{s}.worker.commands.dead", f"test-{s}.events")

    def env(self) -> dict[str, str]:
        return {f"OUTPLAN_{k.upper()}": v for k, v in self.__dict__.items()}


def worker_command() -> list[str]:
    script = shutil.which("outplan-worker", path=str(Path(sys.executable).parent)) or shutil.which("outplan-worker")
    assert script, "the outplan-worker console script is not installed"
    return [script]


@dataclass
class WorkerProcess:
    names: WorkerNames
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


async def wait_until_answering(names: WorkerNames, seconds: float = 30) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            client = OutplanClient(connection, exchange=names.command_exchange)
            try:
                await client.start()
                await client.send("outplan.list", {"customer_id": str(uuid.uuid4())}, timeout=2)
                return
            except (TimeoutError, aio_pika.exceptions.AMQPError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.3)


def start_worker(database_url: str, tmp: Path, names: WorkerNames | None = None,
                 **settings: str) -> WorkerProcess:
    names = names or WorkerNames.fresh()
    env = {**os.environ, **names.env(), "OUTPLAN_DATABASE_URL": database_url, "OUTPLAN_AMQP_URL": AMQP_URL,
           "OUTPLAN_RELAY_POLL_SECONDS": "0.2", **{f"OUTPLAN_{k.upper()}": v for k, v in settings.items()}}
    log_path = tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([*worker_command(), "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    worker = WorkerProcess(names, env, process, log_path)
    try:
        asyncio.run(wait_until_answering(names))
    except BaseException:
        worker.process.kill()
        raise RuntimeError("worker did not start:\n" + worker.log()) from None
    return worker


async def delete_names(names: WorkerNames) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for queue in (names.command_queue, names.dead_letter_queue):
            await channel.queue_delete(queue)
        for exchange in (names.command_exchange, names.dead_letter_exchange, names.event_exchange):
            await channel.exchange_delete(exchange)


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

    async def wait_for_message(self, message_id: str, seconds: float = 10) -> AbstractIncomingMessage:
        async with asyncio.timeout(seconds):
            while True:
                for message in self.messages:
                    if message.message_id == message_id:
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
