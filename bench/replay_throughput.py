"""Replay throughput against the broker's own confirmed publish rate, measured in the same run.

    .venv/bin/python -m bench.replay_throughput [--events 100000] [--runs 3]

Both sides publish persistent messages of the same bodies to a durable (quorum) queue through
the default exchange, with publisher confirms and the same number of confirms in flight.
"""

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import asyncpg

from bench.common import AMQP_URL, delete_queue, drop_database, durable_queue, fresh_database, median, save
from contracts import names

WINDOW = 256


async def fill_log(url: str, count: int) -> list[bytes]:
    """``count`` published events in the log, numbered and encoded as the worker writes them."""
    conn = await asyncpg.connect(url)
    try:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        customer = uuid.uuid4()
        records = []
        for i in range(count):
            outplan_id = uuid.uuid4()
            data = json.dumps(
                {
                    "id": str(outplan_id),
                    "customer_id": str(customer),
                    "name": f"bench {i}",
                    "detail": "",
                    "source": {
                        "type": "tel",
                        "target": "+15559876543",
                        "target_name": "",
                        "name": "",
                        "detail": "",
                    },
                    "dial_timeout": 30000,
                    "try_interval": 60000,
                    **{f"max_try_count_{k}": 5 for k in range(5)},
                    "tm_create": "2026-01-01 00:00:00.000000",
                    "tm_update": "2026-01-01 00:00:00.000000",
                    "tm_delete": "9999-01-01 00:00:00.000000",
                },
                separators=(",", ":"),
            )
            records.append(
                (
                    uuid.uuid4(),
                    "outplan_created",
                    outplan_id,
                    customer,
                    1,
                    start + timedelta(microseconds=i),
                    data,
                    i + 1,
                )
            )
        await conn.execute(
            "CREATE TEMP TABLE staged (event_id uuid, event_type text, outplan_id uuid, customer_id uuid,"
            " outplan_version int, occurred_at timestamptz, data text, eventsequence bigint)"
        )
        await conn.copy_records_to_table(
            "staged",
            records=records,
            columns=[
                "event_id",
                "event_type",
                "outplan_id",
                "customer_id",
                "outplan_version",
                "occurred_at",
                "data",
                "eventsequence",
            ],
        )
        rows = await conn.fetch(
            "INSERT INTO outplan_events (event_id, event_type, outplan_id, customer_id, outplan_version,"
            " occurred_at, data, eventsequence, body)"
            " SELECT event_id, event_type, outplan_id, customer_id, outplan_version, occurred_at, data,"
            "  eventsequence,"
            "  outplan_event_body(event_id, $1, event_type, outplan_id, occurred_at, customer_id,"
            "   outplan_version, eventsequence, data)"
            " FROM staged ORDER BY eventsequence RETURNING body",
            json.dumps(names.EVENT_SOURCE),
        )
        await conn.execute("UPDATE event_sequence SET last_value = $1", count)
        await conn.execute("UPDATE outbox_state SET published_through = $1", count)
        bodies = [row["body"] for row in rows]
        return bodies
    finally:
        await conn.close()


async def broker_rate(bodies: list[bytes], queue: str) -> float:
    """The ceiling: a bare aio-pika publisher, persistent, confirmed, WINDOW in flight."""
    await durable_queue(queue)
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = channel.default_exchange
        pending: collections.deque[asyncio.Task[object]] = collections.deque()
        started = time.perf_counter()
        for body in bodies:
            message = aio_pika.Message(
                body,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/cloudevents+json",
            )
            pending.append(asyncio.create_task(exchange.publish(message, routing_key=queue, mandatory=True)))
            if len(pending) >= WINDOW:
                await pending.popleft()  # confirms arrive in order: wait for the oldest
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
    await delete_queue(queue)
    return len(bodies) / elapsed


def replay_rate(url: str, queue: str, count: int) -> float:
    asyncio.run(durable_queue(queue))
    env = {**os.environ, "OUTPLAN_DATABASE_URL": url, "OUTPLAN_AMQP_URL": AMQP_URL}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "worker", "replay", "--queue", queue], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    asyncio.run(delete_queue(queue))
    if result.returncode != 0:
        raise SystemExit(f"replay failed: {result.stderr[-2000:]}")
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert summary["confirmed"] == count, summary
    return count / elapsed  # wall clock, start-up included


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    url = asyncio.run(fresh_database())
    try:
        bodies = asyncio.run(fill_log(url, args.events))
        ceiling, replay = [], []
        for run in range(args.runs):
            queue = f"bench-replay-{uuid.uuid4().hex[:8]}"
            ceiling.append(asyncio.run(broker_rate(bodies, queue)))
            replay.append(replay_rate(url, queue, args.events))
            print(f"run {run + 1}: broker {ceiling[-1]:,.0f}/s  replay {replay[-1]:,.0f}/s", flush=True)
    finally:
        asyncio.run(drop_database(url))
    result = {
        "events": args.events,
        "runs": args.runs,
        "window": WINDOW,
        "broker_confirmed_publish_per_s": ceiling,
        "replay_per_s": replay,
        "median_broker": median(ceiling),
        "median_replay": median(replay),
        "ratio_replay_to_broker": median(replay) / median(ceiling),
    }
    print(f"\n{'':<38}{'median':>12}")
    print(f"{'broker confirmed publish (events/s)':<38}{result['median_broker']:>12,.0f}")
    print(f"{'outplan-worker replay (events/s)':<38}{result['median_replay']:>12,.0f}")
    print(f"{'replay / broker':<38}{result['ratio_replay_to_broker']:>12.2f}")
    print(f"written to {save('replay', result)}")


if __name__ == "__main__":
    main()
