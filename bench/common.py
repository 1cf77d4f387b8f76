"""Helpers shared by the benchmarks: fresh databases, queues, medians, a results file."""

import json
import math
import os
import platform
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

from worker.persistence.migrate import migrate

AMQP_URL = os.environ.get("OUTPLAN_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
PG_ROOT = os.environ.get("OUTPLAN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
RESULTS = Path(__file__).parent / "results"


async def fresh_database() -> str:
    url = f"{PG_ROOT}/outplans_bench_{uuid.uuid4().hex[:8]}"
    await migrate(url)
    return url


async def drop_database(url: str) -> None:
    conn = await asyncpg.connect(f"{PG_ROOT}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def durable_queue(name: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})


async def delete_queue(name: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        await (await connection.channel()).queue_delete(name)


_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds a process has used so far, from /proc/<pid>/stat (utime and stime,
    fields 14 and 15, in clock ticks): readable for any child process, unlike ``resource``, which
    only reports children that have exited. Resolution: one tick (10 ms at the usual 100 Hz)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) is in parentheses and may hold spaces: count from after it.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    def version(*cmd: str) -> str:
        try:
            return (
                subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
            )
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "rabbitmq": version("rabbitmqctl", "version"),
        "postgresql": version("psql", "--version"),
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with the machine's description to bench/results/<name>-<UTC time>.json;
    return its path. The file is strict JSON: an infinite figure (a command that never arrived
    makes a latency inf) is written as the string "inf" (or "-inf"), which ``float()`` reads
    back, and NaN as null."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(json_safe({"machine": machine(), **payload}), indent=2, allow_nan=False))
    return path


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced as ``save`` writes it ("inf", "-inf", None),
    through dicts, lists and tuples (tuples become lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
