"""The tutorial flow over RabbitMQ: six operations, each reply and each event printed."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from contracts import Reply, parse_event

from ..client import connect_when_ready
from ..messaging.brokers import connect_first
from ..settings import Settings

TUTORIAL_CREATE: dict[str, Any] = {
    "name": "test outplan",
    "detail": "outplan for test use.",
    "source": {"type": "tel", "target": "+15559876543"},
    "dial_timeout": 30000,
    "try_interval": 600000,
    **{f"max_try_count_{i}": 5 for i in range(5)},
}
TUTORIAL_DIAL_INFO: dict[str, Any] = {
    "source": {"type": "tel", "target": "+15559876543"},
    "dial_timeout": 30000,
    "try_interval": 60000,
    **{f"max_try_count_{i}": 5 for i in range(5)},
}


def _show(title: str, payload: Any) -> None:
    print(f"\n== {title}")
    print(json.dumps(payload, indent=2, ensure_ascii=False))


async def run_demo(settings: Settings, *, wait_seconds: float = 30.0) -> int:
    """For a new random customer: create, get, list, update basic info, update dial info, delete,
    each reply printed, then the four events they caused (awaited up to 10 s).

    Waits up to ``wait_seconds`` (s) for a worker to answer first, else raises ``TimeoutError``.
    Returns 0 when every reply succeeded and the four events arrived, else 1.
    """
    customer_id = str(uuid.uuid4())
    connection = await connect_first(settings.amqp_urls)
    async with connection:
        channel = await connection.channel()
        events_exchange = await channel.declare_exchange(
            settings.event_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        events_queue = await channel.declare_queue(exclusive=True)
        await events_queue.bind(events_exchange, routing_key="#")
        received: list[bytes] = []

        async def on_event(message: AbstractIncomingMessage) -> None:
            if json.loads(message.body).get("customerid") == customer_id:
                received.append(message.body)

        await events_queue.consume(on_event, no_ack=True)
        client = await connect_when_ready(
            connection, exchange=settings.command_exchange, seconds=wait_seconds
        )

        print(f"customer_id: {customer_id}")
        created = await client.create(customer_id, **TUTORIAL_CREATE)
        _show("create (POST /outplans)", created.model_dump(exclude_none=True))
        if not created.ok:
            return 1
        outplan_id = created.data["id"]
        steps: list[tuple[str, Reply]] = [
            ("get (GET /outplans/{id})", await client.get(customer_id, outplan_id)),
            ("list (GET /outplans)", await client.list(customer_id)),
            (
                "update basic info (PUT /outplans/{id})",
                await client.update_basic_info(
                    customer_id, outplan_id, name="test outplan", detail="outplan for test use"
                ),
            ),
            (
                "update dial info (PUT /outplans/{id}/dial_info)",
                await client.update_dial_info(customer_id, outplan_id, **TUTORIAL_DIAL_INFO),
            ),
            ("delete (DELETE /outplans/{id})", await client.delete(customer_id, outplan_id)),
        ]
        for title, reply in steps:
            _show(title, reply.model_dump(exclude_none=True))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(received) < 4 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for body in received:
            event = parse_event(body)
            _show(f"event {event.type} v{event.outplanversion} (seq {event.eventsequence})", json.loads(body))
        ok = all(reply.ok for _, reply in steps) and len(received) == 4
        print(f"\n{len(steps) + 1} replies, {len(received)} events received: {'OK' if ok else 'INCOMPLETE'}")
        return 0 if ok else 1


def demo_with_worker(settings: Settings) -> int:
    """Start ``outplan-worker run`` beside the demo, then stop it with SIGTERM."""
    worker = subprocess.Popen([sys.executable, "-m", "worker", "run"], env=os.environ.copy())
    try:
        return asyncio.run(run_demo(settings))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
