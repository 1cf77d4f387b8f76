"""How much of a writer's time goes to waiting on the event-sequence counter row, at saturation.

    .venv/bin/python -m bench.sequence_contention            # 1 and 2 worker processes, 3 rounds
    .venv/bin/python -m bench.sequence_contention --quick    # one short round

Every batch write takes the one ``event_sequence`` row (migration 0004) and holds it until it
commits, so writers in different processes queue on it. While the worker drains a backlog, this
samples ``pg_stat_activity`` of the benchmark's database every ``--interval-ms`` (default 5 ms)
and counts, among the worker's batch-write backends that are running the write statement, the
samples in which one waits on a ``Lock``/``transactionid`` (a row lock held by another
transaction: the counter, in this statement). The share of such samples is the share of a
writer's time spent waiting on that row. Throughput per process is printed too; on 2 cores it
measures CPU contention between the processes, the broker and PostgreSQL, not the row.
Writes bench/results/sequence-contention-*.json.
"""

import argparse
import asyncio
import time
from typing import Any

import aio_pika
import asyncpg

from bench.common import AMQP_URL, PG_ROOT, median, save
from bench.throughput import Rig, run
from bench.workload import mixed, preload

# The batch write's statement starts with its first CTE (worker/persistence/batch_write.py).
_WRITER = "WITH inserted AS (INSERT INTO outplans"

_SAMPLE = """
SELECT count(*) FILTER (WHERE state = 'active') AS writing,
       count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock'
                        AND wait_event = 'transactionid') AS waiting
FROM pg_stat_activity
WHERE datname = $1 AND query LIKE $2
"""


async def _sample(database: str, interval_s: float, stop: asyncio.Event) -> dict[str, int]:
    """Poll until ``stop``; returns totals of writer-samples and waiting writer-samples."""
    conn = await asyncpg.connect(f"{PG_ROOT}/postgres")
    totals = {"polls": 0, "writing": 0, "waiting": 0, "polls_with_a_wait": 0}
    try:
        while not stop.is_set():
            row = await conn.fetchrow(_SAMPLE, database, _WRITER + "%")
            assert row is not None
            totals["polls"] += 1
            totals["writing"] += row["writing"]
            totals["waiting"] += row["waiting"]
            totals["polls_with_a_wait"] += 1 if row["waiting"] else 0
            await asyncio.sleep(interval_s)
    finally:
        await conn.close()
    return totals


async def contention(count: int, workers: int, interval_ms: float) -> dict[str, Any]:
    """Drain ``count`` mixed commands with ``workers`` processes while sampling; returns the figures."""
    rig = await Rig.create()
    try:
        await preload(AMQP_URL, rig.settings.command_queue, mixed(rig.customer, rig.ids, count))
        database = rig.url.rsplit("/", 1)[1]
        stop = asyncio.Event()
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            rig.start(workers)
            sampler: asyncio.Task[dict[str, int]] | None = None
            first: tuple[float, int] | None = None
            started = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                queue = await channel.declare_queue(rig.events_queue, passive=True)
                now, depth = time.perf_counter(), queue.declaration_result.message_count or 0
                if depth and first is None:
                    first = (now, depth)
                    # Sampled only while events flow: start-up and the tail are not saturation.
                    sampler = asyncio.create_task(_sample(database, interval_ms / 1000, stop))
                if depth >= count * 0.95:
                    break
                if now - started > max(120, count / 50):
                    raise TimeoutError(f"{depth} of {count} events after {now - started:.0f} s")
            stop.set()
            assert sampler is not None and first is not None
            totals = await sampler
        per_second = (depth - first[1]) / (now - first[0])
        return {
            "workers": workers,
            "commands": count,
            "per_second": per_second,
            "per_second_per_process": per_second / workers,
            **totals,
            "waiting_share": totals["waiting"] / totals["writing"] if totals["writing"] else 0.0,
        }
    finally:
        await rig.close()


def main() -> None:
    """Run the measurement and print one line per round and a median table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="one round of 5,000 commands")
    args = parser.parse_args()
    if args.quick:
        args.commands, args.rounds = 5_000, 1
    rounds = []
    for n in range(1, args.rounds + 1):
        one = run(contention(args.commands, 1, args.interval_ms))
        two = run(contention(args.commands, 2, args.interval_ms))
        rounds.append({"one": one, "two": two})
        for r in (one, two):
            print(
                f"round {n}, {r['workers']} process(es): {r['per_second']:,.0f}/s"
                f" ({r['per_second_per_process']:,.0f}/s per process);"
                f" writer samples {r['writing']}, waiting on the counter row {r['waiting']}"
                f" ({r['waiting_share']:.1%})",
                flush=True,
            )
    summary = {
        f"{key}_{figure}": median([r[key][figure] for r in rounds])
        for key in ("one", "two")
        for figure in ("per_second", "per_second_per_process", "waiting_share")
    }
    print(
        f"median: 1 process {summary['one_per_second']:,.0f}/s, waiting share"
        f" {summary['one_waiting_share']:.1%}; 2 processes {summary['two_per_second']:,.0f}/s"
        f" ({summary['two_per_second_per_process']:,.0f}/s per process), waiting share"
        f" {summary['two_waiting_share']:.1%}"
    )
    print(save("sequence-contention", {"rounds": rounds, **summary}))


if __name__ == "__main__":
    main()
