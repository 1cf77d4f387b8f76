"""One run of a paired A/B comparison: the checkout it runs in, measured the same way each time.

    .venv/bin/python -m bench.paired LABEL [NAME=VALUE ...]

prints one line: LABEL, the worker's event latency at 500/s offered (p50/p99 ms, 10 s), RPC
create and get at 500/s (p50/p99 ms, 5 s each), and saturation on a 20,000-command backlog
(commands/s and CPU ms per command). ``NAME=VALUE`` pairs go into the worker's environment
(``OUTPLAN_BATCH_WRITERS=2``, say). For a paired comparison of two commits, check each out in
its own tree with its own ``.venv`` (``git worktree add``, ``scripts/bootstrap``) and alternate
runs, so that both sides see the same machine::

    for i in 1 2 3; do for tree in ../before ../after; do
      (cd $tree && .venv/bin/python -m bench.paired $(basename $tree)); done; done

Compare the pairs, not runs across pairs: the machine's speed drifts from hour to hour.
"""

import sys
from typing import Any

import aio_pika
import uvloop

from bench.common import AMQP_URL
from bench.throughput import (
    EventClock,
    Rig,
    _instrument,
    _offer,
    _rpc,
    _summary,
    no_collector_pauses,
    saturation,
)
from bench.workload import mixed

RATE = 500  # commands/s offered


async def latency(env: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Events, RPC create and RPC get at ``RATE``: each ``_summary`` (ms)."""
    rig = await Rig.create()
    rig.env.update(env)
    try:
        rig.start(1)
        clock = EventClock()
        async with await aio_pika.connect(AMQP_URL) as connection:
            send = await _instrument(connection, rig.events_queue, clock)
            deletable = list(rig.ids[: len(rig.ids) // 2])  # shared: each outplan is deleted once
            exchange = rig.settings.command_exchange
            warm = mixed(rig.customer, rig.ids, RATE, seed_value=1, deletable=deletable)
            await _offer(send, clock, warm, RATE, exchange)  # started and warm
            with no_collector_pauses():
                commands = mixed(rig.customer, rig.ids, RATE * 10, seed_value=2, deletable=deletable)
                events = await _offer(send, clock, commands, RATE, exchange)
            with no_collector_pauses():
                create = await _rpc(connection, rig, "outplan.create", RATE, 5)
            with no_collector_pauses():
                get = await _rpc(connection, rig, "outplan.get", RATE, 5)
            return _summary(events), _summary(create), _summary(get)
    finally:
        await rig.close()


def main() -> None:
    label, *pairs = sys.argv[1:]
    env = dict(pair.split("=", 1) for pair in pairs)
    events, create, get = uvloop.run(latency(env))
    saturated = uvloop.run(saturation(20_000, 1, env=env))
    print(
        f"{label} events {events['p50_ms']:.2f}/{events['p99_ms']:.2f}"
        f" create {create['p50_ms']:.2f}/{create['p99_ms']:.2f}"
        f" get {get['p50_ms']:.2f}/{get['p99_ms']:.2f}"
        f" sat {saturated['per_second']:.0f}/s cpu {saturated['cpu_ms_per_command']:.3f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
