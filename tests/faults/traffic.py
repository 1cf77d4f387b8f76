"""A steady stream of mixed mutations from a separate producer, and a durable subscriber."""

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection

from contracts import Reply
from tests.conftest import AMQP_URL
from tests.faults.ledger import Delivery, Ledger, Sent
from tests.support.commands import SOURCE
from tests.support.workers import WorkerNames
from worker.messaging.brokers import connect_robust_first


class Traffic:
    """Sends creates, updates and deletes with unique message_ids; re-sends unanswered ones."""

    def __init__(
        self,
        names: WorkerNames,
        *,
        seed: int,
        customers: int = 3,
        amqp_urls: list[str] | None = None,
        queue_arguments: dict[str, Any] | None = None,
    ) -> None:
        """``amqp_urls``: the brokers to fail over between (the machine's one by default);
        ``queue_arguments``: of its reply and event queues (on a cluster, quorum queues survive a node)."""
        self.names = names
        self.amqp_urls = amqp_urls or [AMQP_URL]
        self.queue_arguments = queue_arguments
        self.rng = random.Random(seed)
        self.customers = [str(uuid.uuid4()) for _ in range(customers)]
        self.ledger = Ledger()
        self.live: dict[str, list[str]] = {c: [] for c in self.customers}
        self._suffix = uuid.uuid4().hex[:8]
        self._connection: AbstractRobustConnection | None = None
        self._channels: list[AbstractRobustChannel] = []

    async def open(self) -> None:
        self._connection = await connect_robust_first(self.amqp_urls, timeout=10)
        publish = await self._connection.channel(publisher_confirms=True)
        listen = await self._connection.channel()
        await listen.set_qos(prefetch_count=500)
        self._channels = [publish, listen]
        # Durable queues, so replies and events survive a broker restart.
        self.reply_queue = await listen.declare_queue(
            f"faults.{self._suffix}.replies", durable=True, arguments=self.queue_arguments
        )
        await self.reply_queue.consume(self._on_reply)
        self.event_queue = await listen.declare_queue(
            f"faults.{self._suffix}.events", durable=True, arguments=self.queue_arguments
        )
        await self.event_queue.bind(self.names.event_exchange, routing_key="#")
        await self.event_queue.consume(self._on_event)

    async def close(self) -> None:
        assert self._connection is not None
        for queue in (self.reply_queue, self.event_queue):
            await queue.delete(if_unused=False, if_empty=False)
        await self._connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        reply = Reply.model_validate_json(message.body)
        mid = message.correlation_id or ""
        if mid in self.ledger.sent and mid not in self.ledger.replies:
            self.ledger.replies[mid] = reply
            sent = self.ledger.sent[mid]
            sent.replied_at = asyncio.get_running_loop().time()
            if sent.command == "outplan.create" and reply.status_code == 201:
                self.live[sent.body["customer_id"]].append(reply.data["id"])
        await message.ack()

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        if body.get("customerid") in self.live:
            self.ledger.deliveries.append(
                Delivery(
                    message.message_id or "",
                    message.body,
                    correlation_id=message.correlation_id or "",
                    received_at=asyncio.get_running_loop().time(),
                )
            )
        await message.ack()

    def _next(self) -> tuple[str, dict[str, Any]]:
        customer = self.rng.choice(self.customers)
        live = self.live[customer]
        roll = self.rng.random()
        if len(live) < 3 or roll < 0.3:
            return "outplan.create", {
                "customer_id": customer,
                "name": f"n{self.rng.randrange(10**6)}",
                "source": SOURCE,
            }
        # Most changes go to a few recent outplans, so concurrent changes to one outplan happen.
        target = self.rng.choice(live[-5:])
        if roll < 0.6:
            return "outplan.update_basic_info", {
                "customer_id": customer,
                "id": target,
                "name": f"b{self.rng.randrange(10**6)}",
                "detail": "d",
            }
        if roll < 0.9:
            return "outplan.update_dial_info", {
                "customer_id": customer,
                "id": target,
                "source": SOURCE,
                "dial_timeout": self.rng.randrange(1000, 600001),
                "try_interval": self.rng.randrange(1000, 10**6),
                **{f"max_try_count_{i}": self.rng.randrange(0, 101) for i in range(5)},
            }
        live.remove(target)
        return "outplan.delete", {"customer_id": customer, "id": target}

    async def publish(self, sent: Sent) -> None:
        """Publish with a confirm; while the broker is away, wait and try again (same message_id)."""
        channel = self._channels[0]
        if not sent.sent_at:
            sent.sent_at = asyncio.get_running_loop().time()
        while True:
            try:
                exchange = await channel.get_exchange(self.names.command_exchange, ensure=False)
                await exchange.publish(
                    aio_pika.Message(
                        json.dumps(sent.body).encode(),
                        content_type="application/json",
                        message_id=sent.message_id,
                        correlation_id=sent.message_id,
                        reply_to=self.reply_queue.name,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=sent.command,
                    mandatory=False,
                    timeout=5,
                )
                return
            except (aio_pika.exceptions.AMQPError, ConnectionError, TimeoutError, RuntimeError):
                await asyncio.sleep(0.2)

    async def send(self, command: str, body: dict[str, Any]) -> Sent:
        """One extra command outside the generated stream, recorded in the ledger."""
        sent = Sent(str(uuid.uuid4()), command, body)
        self.ledger.sent[sent.message_id] = sent
        await self.publish(sent)
        return sent

    async def run(
        self, count: int, rate: float, on_progress: Callable[[int], Awaitable[None]] | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(count):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            command, body = self._next()
            sent = Sent(str(uuid.uuid4()), command, body)
            self.ledger.sent[sent.message_id] = sent
            await self.publish(sent)
            if on_progress is not None:
                await on_progress(i + 1)

    async def settle(self, timeout: float = 120, resend_after: float = 8) -> None:
        """Wait for every reply and every accepted change's event; re-send what stays unanswered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_resend = loop.time()
        while loop.time() < deadline:
            unanswered = [s for mid, s in self.ledger.sent.items() if mid not in self.ledger.replies]
            if not unanswered and len(self.ledger.unique_event_ids()) >= len(self.ledger.accepted()):
                await asyncio.sleep(1.0)  # anything late or duplicated shows up now
                return
            if unanswered and loop.time() - last_resend > resend_after:
                for sent in unanswered:
                    sent.sends += 1
                    await self.publish(sent)
                last_resend = loop.time()
            await asyncio.sleep(0.1)
