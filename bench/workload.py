"""The benchmark's commands: a mixed backlog over seeded outplans, published before the clock starts."""

import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import asyncpg

SOURCE = {"type": "tel", "target": "+15559876543"}


async def seed(url: str, customer: uuid.UUID, count: int) -> list[uuid.UUID]:
    """``count`` live outplans to update and delete, written straight into the table."""
    ids = [uuid.uuid4() for _ in range(count)]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO outplans SELECT id, $2, 'seed', '', 'tel', '+15559876543', '', '', '', 30000, 60000,"
            " 1, 1, 1, 1, 1, 1, now(), now(), NULL FROM unnest($1::uuid[]) AS id",
            ids,
            customer,
        )
    finally:
        await conn.close()
    return ids


def mixed(
    customer: uuid.UUID,
    ids: list[uuid.UUID],
    count: int,
    seed_value: int = 1,
    deletable: list[uuid.UUID] | None = None,
) -> list[tuple[str, bytes]]:
    """Creates, both updates and deletes (about 40/25/25/10), each on its own outplan until it is deleted.

    Deletes take outplans from ``deletable`` (by default the first half of ``ids``), removing
    them from that list: pass the same list to later calls on the same outplans, or they would
    delete outplans already deleted (a 404, and no event to wait for).
    """
    rng = random.Random(seed_value)
    # Deletes take outplans no earlier command touched, so with commands running concurrently
    # no update can land after its outplan's delete: every command has exactly one event.
    untouched = deletable if deletable is not None else list(ids[: len(ids) // 2])
    updatable = list(ids[len(ids) // 2 :])
    commands: list[tuple[str, bytes]] = []
    for i in range(count):
        roll = rng.random()
        body: dict[str, Any] = {"customer_id": str(customer)}
        if roll < 0.4 or (roll >= 0.9 and not untouched):
            name, body = (
                "outplan.create",
                {**body, "name": f"bench {i}", "source": SOURCE, "max_try_count_0": 3},
            )
        elif roll < 0.65:
            name, body = (
                "outplan.update_basic_info",
                {**body, "id": str(rng.choice(updatable)), "name": f"b{i}", "detail": "benchmark"},
            )
        elif roll < 0.9:
            name, body = (
                "outplan.update_dial_info",
                {
                    **body,
                    "id": str(rng.choice(updatable)),
                    "source": SOURCE,
                    "dial_timeout": 30000 + i % 1000,
                    "try_interval": 60000,
                    **{f"max_try_count_{k}": k for k in range(5)},
                },
            )
        else:
            target = untouched.pop(rng.randrange(len(untouched)))
            name, body = "outplan.delete", {**body, "id": str(target)}
        commands.append((name, json.dumps(body, separators=(",", ":")).encode()))
    return commands


def message(name: str, body: bytes, **props: Any) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type="application/json",
        type=name,
        message_id=str(uuid.uuid4()),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        **props,
    )


async def preload(
    amqp_url: str,
    queue: str,
    commands: list[tuple[str, bytes]],
    window: int = 500,
    headers: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Publish the backlog straight into ``queue`` (default exchange, ``type`` names the command),
    each message with the application headers ``headers()`` returns, when given."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        pending = []
        for name, body in commands:
            props = {"headers": headers()} if headers is not None else {}
            pending.append(channel.default_exchange.publish(message(name, body, **props), routing_key=queue))
            if len(pending) >= window:
                await asyncio_gather(pending)
                pending = []
        await asyncio_gather(pending)


async def asyncio_gather(aws: list[Any]) -> None:
    import asyncio

    await asyncio.gather(*aws)
