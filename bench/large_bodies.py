"""Peak RSS of the worker with large invalid bodies in flight: bounded by what is in flight, no copies.

RabbitMQ bounds prefetch by message count only, so a worker holds up to ``prefetch`` bodies at
once. This measures the worker's peak RSS (``VmHWM``) with ``--count`` bodies of ``--mib`` MiB
delivered together (published while the worker was stopped, then taken by one start), against
its RSS at rest before them, and prints the extra memory as a ratio of the bytes in flight.
Each body is larger than the 64 KiB a command may be, so each is answered 400 BODY_TOO_LARGE and
dead-lettered as a 64 KiB prefix.

    .venv/bin/python -m bench.large_bodies [--count 10] [--mib 50] [--rounds 3]
"""

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika

from bench.common import AMQP_URL, drop_database, fresh_database, median, save

MIB = 1024 * 1024


def _status(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory figure, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).parent / "outplan-worker"
    return subprocess.Popen(
        [str(script), "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def _wait_for_consumer(queue: str, seconds: float = 30) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            channel = await connection.channel()  # a passive declare of a missing queue closes it
            try:
                declared = await channel.declare_queue(queue, passive=True)
                if declared.declaration_result.consumer_count:
                    return
            except aio_pika.exceptions.ChannelNotFoundEntity:
                pass  # not declared yet
            await asyncio.sleep(0.1)
    raise RuntimeError("the worker did not start consuming")


async def one_round(count: int, size: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    names = {
        "command_exchange": f"bench-{tag}.commands",
        "command_queue": f"bench-{tag}.worker.commands",
        "dead_letter_exchange": f"bench-{tag}.dlx",
        "dead_letter_queue": f"bench-{tag}.dead",
        "event_exchange": f"bench-{tag}.events",
    }
    database = await fresh_database()
    env = {
        **os.environ,
        "OUTPLAN_DATABASE_URL": database,
        "OUTPLAN_AMQP_URL": AMQP_URL,
        "OUTPLAN_METRICS_PORT": "0",
        **{f"OUTPLAN_{k.upper()}": v for k, v in names.items()},
    }
    try:
        first = _start(env)  # declares the topology
        await _wait_for_consumer(names["command_queue"])
        first.send_signal(signal.SIGTERM)
        first.wait(30)
        body = b'{"detail": "' + b"x" * (size - 14) + b'"}'
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            for _ in range(count):
                await channel.default_exchange.publish(
                    aio_pika.Message(body, message_id=str(uuid.uuid4()), type="outplan.create"),
                    routing_key=names["command_queue"],
                )
        worker = _start(env)
        try:
            await _wait_for_consumer(names["command_queue"])
            at_rest = _status(worker.pid, "VmRSS")  # before a delivery has arrived, or as it arrives
            async with await aio_pika.connect(AMQP_URL) as connection:
                channel = await connection.channel()
                dead = await channel.declare_queue(names["dead_letter_queue"], passive=True)
                deadline = time.monotonic() + 120
                while (dead.declaration_result.message_count or 0) < count and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    dead = await channel.declare_queue(names["dead_letter_queue"], passive=True)
                dead_lettered = dead.declaration_result.message_count or 0
            peak = _status(worker.pid, "VmHWM")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            for queue in (names["command_queue"], names["dead_letter_queue"]):
                await channel.queue_delete(queue)
            for exchange in (
                names["command_exchange"],
                names["dead_letter_exchange"],
                names["event_exchange"],
            ):
                await channel.exchange_delete(exchange)
    finally:
        await drop_database(database)
    in_flight = count * size
    return {
        "at_rest_mb": at_rest / 1e6,
        "peak_mb": peak / 1e6,
        "in_flight_mb": in_flight / 1e6,
        "extra_per_byte_in_flight": (peak - at_rest) / in_flight,
        "extra_per_body": (peak - at_rest) / size,
        "dead_lettered": dead_lettered,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [await one_round(args.count, args.mib * MIB) for _ in range(args.rounds)]
    for i, r in enumerate(rounds, 1):
        print(
            f"round {i}: at rest {r['at_rest_mb']:.0f} MB, peak {r['peak_mb']:.0f} MB, in flight "
            f"{r['in_flight_mb']:.0f} MB, (peak - rest) / in flight {r['extra_per_byte_in_flight']:.2f}, "
            f"(peak - rest) / one body {r['extra_per_body']:.2f}, "
            f"dead-lettered {r['dead_lettered']:.0f}/{args.count}"
        )
    print(
        f"median: peak {median([r['peak_mb'] for r in rounds]):.0f} MB, (peak - rest) / in flight "
        f"{median([r['extra_per_byte_in_flight'] for r in rounds]):.2f}"
    )
    print("results:", save("large-bodies", {"count": args.count, "mib": args.mib, "rounds": rounds}))


if __name__ == "__main__":
    asyncio.run(main())
