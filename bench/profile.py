"""Where the worker's CPU goes: py-spy samples the worker at an offered rate and on a backlog.

    .venv/bin/python -m bench.profile                 # 500/s for 20 s, then a 30,000-command backlog
    .venv/bin/python -m bench.profile --rate 1000 --seconds 30 --backlog 50000

py-spy (the ``bench`` extra) attaches to the worker process the benchmark starts (it needs ptrace:
root, or ``kernel.yama.ptrace_scope`` 0) and samples its Python stacks, idle ones left out, 250
times a second. For each phase it prints the functions with the largest share of the samples, by
self time (the function itself was running) and by total time (it was on the stack), and writes
the collapsed stacks to ``bench/results/profile-<phase>-*.txt`` (flame graph input: one
``frame;frame;... count`` line per stack). Shares are of the samples in which the worker ran
Python code; time spent waiting in the event loop's ``select`` is not a sample.
"""

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aio_pika
import uvloop

from bench.common import AMQP_URL
from bench.throughput import EventClock, Rig, _instrument, _offer, drain
from bench.workload import mixed, preload

RESULTS = Path(__file__).parent / "results"
RATE_HZ = 250


#: Where the project's own frames are: the total shares are of these (the outer frames, the
#: entry point and the event loop, are on every stack and tell nothing).
OWN = ("(worker/", "(contracts/")


def top(collapsed: str, n: int = 15) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """Samples in all, the ``n`` frames with the largest self share (0-1), and the ``n`` frames of
    the project's own code (``OWN``) with the largest total share (on the stack).

    :param collapsed: py-spy's raw output, one ``frame;frame;...;frame count`` line per stack,
        outermost frame first.
    """
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            if any(place in frame for place in OWN):
                total[frame] += count
    if not samples:
        return 0, [], []
    return (
        samples,
        [(frame, count / samples) for frame, count in own.most_common(n)],
        [(frame, count / samples) for frame, count in total.most_common(n)],
    )


def _record(pid: int, seconds: float, phase: str) -> tuple[subprocess.Popen[bytes], Path]:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"profile-{phase}-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: install the bench extra (scripts/bootstrap does)")
    recorder = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(RATE_HZ),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return recorder, out


def _report(phase: str, recording: tuple[subprocess.Popen[bytes], Path]) -> None:
    recorder, out = recording
    recorder.wait(60)
    samples, by_self, by_total = top(out.read_text())
    print(f"\n== {phase}: {samples} samples ({out})")
    print("   self   function")
    for frame, share in by_self:
        print(f"  {share:5.1%}  {frame}")
    print("  total   function")
    for frame, share in by_total:
        print(f"  {share:5.1%}  {frame}")


async def at_rate(rate: int, seconds: float) -> None:
    """The worker at ``rate`` commands/s offered, open loop, sampled for ``seconds`` s."""
    rig = await Rig.create()
    try:
        rig.start(1)
        clock = EventClock()
        async with await aio_pika.connect(AMQP_URL) as connection:
            send = await _instrument(connection, rig.events_queue, clock)
            deletable = list(rig.ids[: len(rig.ids) // 2])  # shared: each outplan is deleted once
            warm = mixed(rig.customer, rig.ids, rate, seed_value=1, deletable=deletable)
            await _offer(send, clock, warm, rate, rig.settings.command_exchange)  # started and warm
            recording = _record(rig.processes[0].pid, seconds, f"at-{rate}")
            commands = mixed(rig.customer, rig.ids, int(rate * seconds), seed_value=2, deletable=deletable)
            await _offer(send, clock, commands, rate, rig.settings.command_exchange)
        _report(f"{rate}/s offered", recording)
    finally:
        await rig.close()


async def on_backlog(count: int) -> None:
    """The worker on a backlog of ``count`` commands (saturation), sampled while it drains."""
    rig = await Rig.create()
    try:
        await preload(AMQP_URL, rig.settings.command_queue, mixed(rig.customer, rig.ids, count))
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            rig.start(1)
            await asyncio.sleep(1.5)  # start-up left out
            recording = _record(rig.processes[0].pid, count / 2000, "saturation")
            measured = await drain(channel, rig.events_queue, count, [rig.processes[0].pid])
        print(
            f"\nsaturation: {measured['per_second']:,.0f}/s, {measured['cpu_ms_per_message']:.3f} ms CPU each"
        )
        _report("saturation", recording)
    finally:
        await rig.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500, help="commands/s offered in the first phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the first phase")
    parser.add_argument(
        "--backlog", type=int, default=30_000, help="commands in the saturation phase (0: skip)"
    )
    args = parser.parse_args()
    uvloop.run(at_rate(args.rate, args.seconds))
    if args.backlog:
        uvloop.run(on_backlog(args.backlog))


if __name__ == "__main__":
    main()
