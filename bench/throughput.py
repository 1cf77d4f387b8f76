"""Worker throughput and latency against the machine's own ceiling and a straightforward baseline.

    .venv/bin/python -m bench.throughput            # the default run (a few minutes)
    .venv/bin/python -m bench.throughput --soak 600 # plus the 10-minute soak at 1,000/s
    .venv/bin/python -m bench.throughput --sustained 300  # plus sustained load (about 35 min)

All figures come from one run, so the ratios hold on a noisy machine. Prints a table and writes
bench/results/throughput-*.json. Each relay at saturation (the ceiling, run in this process; the
bare relay and the worker, run as processes of their own) is also charged its CPU (user + system,
from /proc) from the first message out to the last, printed as CPU ms per message. Latency has
its own floor: the same open-loop measure through a bare relay process (``bench.bare_relay``)
instead of the worker, with no database, shows how much of the worker's latency the broker and
the machine take on their own; a PostgreSQL commit measured alone at 500/s (one-row INSERTs,
autocommit, on a scratch database) shows how much of the rest is the one fsync the worker adds.
Each latency summary keeps a percentile curve (p1 to p99.9 and the max, in ms).

``--sustained SECONDS`` holds the floor at ascending rates (``--sustained-rates``) for SECONDS
each until its p99 climbs (last fifth over 1.5 x the first, or anything lost), then the worker
at 0.8 x the highest rate that held, and reports the worker's p99 per minute (per fifth under
5 min). After the table a targets block (``bench.targets``) judges each target against a bound
from this run, also saved under "targets"; the figure (``bench.plots``, the ``bench`` extra's
matplotlib) is written beside the JSON with the same stem.
"""

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aio_pika
import asyncpg
import uvloop
from aio_pika.abc import AbstractIncomingMessage
from aiormq import spec
from aiormq.abc import DeliveredMessage
from pydantic import SecretStr

from bench.common import (
    AMQP_URL,
    PG_ROOT,
    cpu_seconds,
    delete_queue,
    drop_database,
    durable_queue,
    fresh_database,
    median,
    save,
)
from bench.targets import is_flat, targets
from bench.workload import mixed, preload, seed
from worker.messaging import topology
from worker.messaging.amqp import RawChannel, raw_channel
from worker.settings import Settings

T = TypeVar("T")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def relay_rate(
    source: str,
    sink: str,
    count: int,
    prefetch: int,
    work: Callable[[AbstractIncomingMessage], Awaitable[bytes]],
) -> tuple[float, float]:
    """Consume ``count`` messages; for each, publish what ``work`` returns to ``sink`` (persistent,
    confirm awaited), then ack. Messages per second from the first delivery to the last ack, and
    this process's CPU ms per message over the same span."""
    done = asyncio.Event()
    acked = 0
    first: list[float] = []
    cpu_at_first: list[float] = []
    failed: list[Exception] = []
    async with await aio_pika.connect(AMQP_URL) as connection:
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=prefetch)
        publish = await connection.channel(publisher_confirms=True)
        queue = await consume.declare_queue(source, passive=True)

        async def relay(msg: AbstractIncomingMessage) -> None:
            nonlocal acked
            if not first:
                first.append(time.perf_counter())
                cpu_at_first.append(cpu_seconds())
            try:
                body = await work(msg)
            except Exception as exc:  # a broken benchmark must stop, not wait for the ack forever
                failed.append(exc)
                done.set()
                raise
            await publish.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=sink
            )
            await msg.ack()
            acked += 1
            if acked == count:
                done.set()

        await queue.consume(relay)
        await done.wait()
        end, cpu = time.perf_counter(), cpu_seconds()
        if failed:
            raise failed[0]
        return count / (end - first[0]), (cpu - cpu_at_first[0]) * 1000 / count


# ---- the ceiling: consume -> publish a confirmed persistent message -> ack, no database ----------


async def ceiling(count: int, prefetch: int, body: bytes) -> tuple[float, float]:
    """Messages per second and CPU ms per message of the relay, run in this process."""
    source, sink = f"bench-ceiling-in-{uuid.uuid4().hex[:6]}", f"bench-ceiling-out-{uuid.uuid4().hex[:6]}"
    await durable_queue(source)
    await durable_queue(sink)
    await preload(AMQP_URL, source, [("x", body)] * count)

    async def same_body(msg: AbstractIncomingMessage) -> bytes:
        return msg.body

    measured = await relay_rate(source, sink, count, prefetch, same_body)
    await delete_queue(source)
    await delete_queue(sink)
    return measured


# ---- the baseline: prefetch 1, one transaction per message, await each confirm ----------------


async def baseline(count: int) -> float:
    url = await fresh_database()
    try:
        customer = uuid.uuid4()
        ids = await seed(url, customer, 2000)
        commands = mixed(customer, ids, count)
        source = f"bench-baseline-in-{uuid.uuid4().hex[:6]}"
        events = f"bench-baseline-events-{uuid.uuid4().hex[:6]}"
        await durable_queue(source)
        await durable_queue(events)
        await preload(AMQP_URL, source, commands)
        db = await asyncpg.connect(url)

        async def apply(msg: AbstractIncomingMessage) -> bytes:
            body = json.loads(msg.body)
            async with db.transaction():
                if msg.type == "outplan.create":
                    outplan_id = uuid.uuid4()
                    await db.execute(
                        "INSERT INTO outplans VALUES ($1, $2, $3, '', 'tel', '+15559876543', '', '', '',"
                        " 30000, 60000, 3, 0, 0, 0, 0, 1, now(), now(), NULL)",
                        outplan_id,
                        uuid.UUID(body["customer_id"]),
                        body["name"],
                    )
                elif msg.type == "outplan.delete":
                    outplan_id = uuid.UUID(body["id"])
                    await db.execute(
                        "UPDATE outplans SET tm_delete = now(), version = version + 1 WHERE id = $1",
                        outplan_id,
                    )
                else:
                    outplan_id = uuid.UUID(body["id"])
                    await db.execute(
                        "UPDATE outplans SET name = 'x', version = version + 1, tm_update = now()"
                        " WHERE id = $1",
                        outplan_id,
                    )
                row = await db.fetchrow("SELECT * FROM outplans WHERE id = $1", outplan_id)
                assert row is not None  # inserted above
                data = json.dumps({k: str(v) for k, v in dict(row).items()})
                # Numbered and encoded in the same transaction, as the worker does.
                return bytes(
                    await db.fetchval(
                        "WITH n AS (UPDATE event_sequence SET last_value = last_value + 1"
                        "  RETURNING last_value)"
                        " INSERT INTO outplan_events (event_id, event_type, outplan_id, customer_id,"
                        "  outplan_version, occurred_at, data, eventsequence, body)"
                        " SELECT e, 'outplan_updated', $2, $3, $4, now(), $5, n.last_value,"
                        "  outplan_event_body(e, '\"baseline\"', 'outplan_updated', $2, now(), $3, $4,"
                        "   n.last_value, $5)"
                        " FROM n, (SELECT $1::uuid AS e) AS i RETURNING body",
                        uuid.uuid4(),
                        outplan_id,
                        row["customer_id"],
                        row["version"],
                        data,
                    )
                )

        rate, _ = await relay_rate(source, events, count, 1, apply)
        await db.close()
        await delete_queue(source)
        await delete_queue(events)
        return rate
    finally:
        await drop_database(url)


# ---- the worker as shipped -------------------------------------------------------------------


@dataclass
class Rig:
    """A fresh database and fresh names, the worker's topology declared, an event counter."""

    url: str
    settings: Settings
    env: dict[str, str]
    customer: uuid.UUID
    ids: list[uuid.UUID]
    events_queue: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    async def create(cls, seeded: int = 5000) -> "Rig":
        url = await fresh_database()
        suffix = uuid.uuid4().hex[:6]
        names = {
            "command_exchange": f"bench-{suffix}.commands",
            "command_queue": f"bench-{suffix}.worker",
            "dead_letter_exchange": f"bench-{suffix}.dlx",
            "dead_letter_queue": f"bench-{suffix}.dead",
            "event_exchange": f"bench-{suffix}.events",
        }
        settings = Settings(
            database_url=SecretStr(url),
            command_exchange=names["command_exchange"],
            command_queue=names["command_queue"],
            dead_letter_exchange=names["dead_letter_exchange"],
            dead_letter_queue=names["dead_letter_queue"],
            event_exchange=names["event_exchange"],
        )
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            topo = await topology.declare(channel, settings)
            events = await channel.declare_queue(
                f"bench-{suffix}.subscriber", durable=True, arguments={"x-queue-type": "quorum"}
            )
            await events.bind(topo.events, routing_key="#")
        customer = uuid.uuid4()
        ids = await seed(url, customer, seeded)
        env = {
            **os.environ,
            "OUTPLAN_DATABASE_URL": url,
            "OUTPLAN_AMQP_URL": AMQP_URL,
            "OUTPLAN_METRICS_PORT": "0",
            # As deployed without a collector: no spans (bench.tracing_cost measures them).
            "OTEL_TRACES_EXPORTER": os.environ.get("OTEL_TRACES_EXPORTER", "none"),
            **{f"OUTPLAN_{k.upper()}": v for k, v in names.items()},
        }
        return cls(url, settings, env, customer, ids, events.name)

    def start(self, workers: int = 1) -> None:
        for _ in range(workers):
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "worker", "run"],
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def peak_rss_mb(self) -> list[float]:
        return [_status_kb(p.pid, "VmHWM") / 1024 for p in self.processes]

    def rss_mb(self) -> list[float]:
        return [_status_kb(p.pid, "VmRSS") / 1024 for p in self.processes]

    async def close(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(60)
        s = self.settings
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            for queue in (s.command_queue, s.dead_letter_queue, self.events_queue):
                await channel.queue_delete(queue)
            for exchange in (s.command_exchange, s.dead_letter_exchange, s.event_exchange):
                await channel.exchange_delete(exchange)
        await drop_database(self.url)


def _status_kb(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return float("nan")


class EventClock:
    """Records when each command's event reached the subscriber (by the event's correlation id)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    async def on_event(self, msg: DeliveredMessage) -> None:
        correlation_id = msg.header.properties.correlation_id
        if correlation_id:
            self.arrived[correlation_id] = time.perf_counter()


@contextlib.contextmanager
def no_collector_pauses(seconds: float = 0.0) -> Iterator[None]:
    """Keep this process's garbage collector from pausing it while it timestamps.

    What exists now is frozen out of collections, and collections wait until the block ends:
    a full collection here took 20-80 ms, long enough to show in the percentiles it measures.
    A block expected to last over ``LONG_RUN_S`` (``seconds``) keeps collecting what it makes,
    as the soak does: minutes of garbage would otherwise pile up.
    """
    gc.collect()
    gc.freeze()
    pause = seconds <= LONG_RUN_S
    if pause:
        gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


LONG_RUN_S = 60.0


async def drain(
    channel: aio_pika.abc.AbstractChannel, sink: str, count: int, pids: list[int]
) -> dict[str, float]:
    """Poll the depth of ``sink`` until it holds ``count`` messages; from the first one seen to the
    last: ``per_second``, and ``cpu_ms_per_message``, the CPU (user + system) the processes
    ``pids`` used together in that span, per message that arrived in it."""
    first: tuple[float, int, float] | None = None  # when, depth, CPU seconds
    started = time.perf_counter()
    while True:
        await asyncio.sleep(0.01)
        queue = await channel.declare_queue(sink, passive=True)
        now, depth = time.perf_counter(), queue.declaration_result.message_count or 0
        if depth and first is None:
            first = (now, depth, sum(cpu_seconds(pid) for pid in pids))
        if depth >= count:
            cpu = sum(cpu_seconds(pid) for pid in pids)
            break
        if now - started > max(120, count / 50):
            raise TimeoutError(f"{depth} of {count} messages after {now - started:.0f} s")
    assert first is not None and depth == count, f"{depth} messages for {count}"
    arrived = count - first[1]
    return {"per_second": arrived / (now - first[0]), "cpu_ms_per_message": (cpu - first[2]) * 1000 / arrived}


async def saturation(
    count: int,
    workers: int,
    *,
    headers: Callable[[], dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Throughput on a backlog: events confirmed into the subscriber queue, per second, and the
    workers' CPU ms per command. Each command carries ``headers()`` when given (a traceparent, say);
    ``env`` is added to the workers' environment.

    Nobody consumes that queue while the clock runs, as nobody consumes the ceiling's sink: its
    depth, polled, counts the events the broker confirmed, and no subscriber takes CPU from the
    worker on the shared cores. Timed from the first event seen to the last; the workers' CPU is
    read from /proc at the same two moments, so start-up is left out.
    """
    rig = await Rig.create()
    rig.env.update(env or {})
    try:
        commands = mixed(rig.customer, rig.ids, count)
        await preload(AMQP_URL, rig.settings.command_queue, commands, headers=headers)
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            rig.start(workers)
            measured = await drain(channel, rig.events_queue, count, [p.pid for p in rig.processes])
            rss = rig.peak_rss_mb()
        return {
            "commands": count,
            "workers": workers,
            "per_second": measured["per_second"],
            "cpu_ms_per_command": measured["cpu_ms_per_message"],
            "peak_rss_mb": rss,
        }
    finally:
        await rig.close()


async def bare_saturation(count: int, prefetch: int, body: bytes) -> tuple[float, float]:
    """The bare relay process (``bench.bare_relay``) on a backlog of ``count`` messages: messages
    per second and its CPU ms per message, measured as the worker's are."""
    source, sink = f"bench-bare-in-{uuid.uuid4().hex[:6]}", f"bench-bare-out-{uuid.uuid4().hex[:6]}"
    await durable_queue(source)
    await durable_queue(sink)
    relay: subprocess.Popen[bytes] | None = None
    try:
        await preload(AMQP_URL, source, [("x", body)] * count)
        relay = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_relay", source, sink, str(prefetch)], stdout=subprocess.DEVNULL
        )
        async with await aio_pika.connect(AMQP_URL) as connection:
            measured = await drain(await connection.channel(), sink, count, [relay.pid])
        return measured["per_second"], measured["cpu_ms_per_message"]
    finally:
        if relay is not None:
            relay.send_signal(signal.SIGTERM)
            relay.wait(30)
        await delete_queue(source)
        await delete_queue(sink)


async def open_loop(
    rates: list[int], seconds: float, rpc_rate: int, soak: float, sustained: tuple[int, float] | None = None
) -> dict[str, Any]:
    """The worker, open loop: its events' latency at each of ``rates`` for ``seconds``
    (``events_at_<rate>``), RPC get and create at ``rpc_rate``, then, when given, ``sustained``
    (rate, seconds) as ``_held`` reports it (``sustained_worker``) and the soak at 1,000/s."""
    rig = await Rig.create()
    results: dict[str, Any] = {}
    try:
        rig.start(1)
        clock = EventClock()
        async with await aio_pika.connect(AMQP_URL) as connection:
            send = await _instrument(connection, rig.events_queue, clock)
            await _rpc(connection, rig, "outplan.get", 20, 1.0)  # wait until the worker answers

            deletable = list(rig.ids[: len(rig.ids) // 2])  # shared: each outplan is deleted once

            async def offered(rate: int, duration: float) -> list[float]:
                commands = mixed(
                    rig.customer, rig.ids, int(rate * duration), seed_value=rate, deletable=deletable
                )
                return await _offer(send, clock, commands, rate, rig.settings.command_exchange)

            for rate in rates:
                with no_collector_pauses():
                    latencies = await offered(rate, seconds)
                results[f"events_at_{rate}"] = _summary(latencies)
            for command in ("outplan.get", "outplan.create"):
                with no_collector_pauses():
                    latencies = await _rpc(connection, rig, command, rpc_rate, seconds)
                results[f"rpc_{command}_at_{rpc_rate}"] = _summary(latencies)
            results["rss_mb_after_latency_runs"] = rig.rss_mb()
            if sustained:
                rate, duration = sustained
                with no_collector_pauses(duration):
                    held = _held(await offered(rate, duration), rate)
                results["sustained_worker"] = held
                print(
                    f"sustained worker at {rate}/s for {duration:.0f} s: p99 by stretch"
                    f" {[s['p99_ms'] for s in held['segments']]} ms, {held['lost']} lost,"
                    f" {'flat' if held['flat'] else 'not flat'}",
                    flush=True,
                )
            if soak:
                warm = rig.rss_mb()
                gc.freeze()  # collections go on (ten minutes of garbage) but skip what is here now
                series: list[tuple[float, float]] = []  # (seconds into the soak, worker RSS in MB)

                async def sample(started: float) -> None:
                    while True:
                        series.append((round(time.perf_counter() - started, 1), rig.rss_mb()[0]))
                        await asyncio.sleep(10)

                sampler = asyncio.ensure_future(sample(time.perf_counter()))
                soak_latencies = await offered(1000, soak)
                sampler.cancel()
                first_half = [mb for at, mb in series if at < soak / 2]
                second_half = [mb for at, mb in series if at >= soak / 2]
                results["soak"] = {
                    "seconds": soak,
                    "rate": 1000,
                    "rss_mb_start": warm,
                    "rss_mb_end": rig.rss_mb(),
                    "rss_mb_series": series,
                    "rss_mb_max_first_half": max(first_half, default=float("nan")),
                    "rss_mb_max_second_half": max(second_half, default=float("nan")),
                    "latency": _summary(soak_latencies),
                }
    finally:
        await rig.close()
    return results


async def _instrument(
    connection: aio_pika.abc.AbstractConnection, events_queue: str, clock: EventClock
) -> RawChannel:
    """Subscribe ``clock`` to the events queue; return a confirming channel to send commands on.

    Both beneath aio-pika, as the relay works: the instrument shares the two cores with what it
    measures, and every cycle it spends is taken from that.
    """
    events = await raw_channel(await connection.channel())
    await events.basic_qos(prefetch_count=2000)
    await events.basic_consume(events_queue, clock.on_event, no_ack=True)
    return await raw_channel(await connection.channel(publisher_confirms=True))


async def _offer(
    send: RawChannel,
    clock: EventClock,
    commands: list[tuple[str, bytes]],
    rate: int,
    exchange: str,
    queue: str | None = None,
) -> list[float]:
    """Send ``commands`` open loop at ``rate``; ms from each one's scheduled send (or its actual
    send, when that came first) to its event.

    Routed by command name on ``exchange``, or straight into ``queue`` through the default
    exchange. Waits up to 30 s after the last send; what has not arrived by then counts as inf.
    """
    scheduled: dict[str, float] = {}
    unconfirmed: set[asyncio.Future[Any]] = set()
    start = time.perf_counter() + 0.2
    for i, (name, body) in enumerate(commands):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        message_id = str(uuid.uuid4())
        # From the schedule when sent late (so a stall is never hidden), from the send when the
        # timer woke early (uvloop's timers round to whole ms): whichever came first.
        scheduled[message_id] = min(at, time.perf_counter())
        confirm = asyncio.ensure_future(
            send.basic_publish(
                body,
                exchange=exchange if queue is None else "",
                routing_key=name if queue is None else queue,
                properties=spec.Basic.Properties(
                    content_type="application/json", message_type=name, message_id=message_id, delivery_mode=2
                ),
            )
        )
        unconfirmed.add(confirm)
        confirm.add_done_callback(unconfirmed.discard)
    await asyncio.gather(*unconfirmed)
    deadline = time.perf_counter() + 30
    while not all(mid in clock.arrived for mid in scheduled) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    return [(clock.arrived.get(mid, float("inf")) - at) * 1000 for mid, at in scheduled.items()]


@contextlib.asynccontextmanager
async def _bare_relay(prefetch: int) -> AsyncIterator[tuple[str, str]]:
    """A bare relay process (``bench.bare_relay``) between two fresh quorum queues, ready: yields
    (source, sink); terminated and the queues deleted on the way out."""
    source, sink = f"bench-floor-in-{uuid.uuid4().hex[:6]}", f"bench-floor-out-{uuid.uuid4().hex[:6]}"
    await durable_queue(source)
    await durable_queue(sink)
    relay = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_relay", source, sink, str(prefetch)], stdout=subprocess.PIPE
    )
    try:
        assert relay.stdout is not None
        if (await asyncio.to_thread(relay.stdout.readline)).strip() != b"ready":
            raise RuntimeError(f"the bare relay did not start (exit code {relay.wait(10)})")
        yield source, sink
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)
        await delete_queue(source)
        await delete_queue(sink)


async def floor(rates: list[int], seconds: float, prefetch: int) -> dict[str, Any]:
    """The same open-loop measure through a bare relay process instead of the worker.

    Send -> quorum queue -> consume, publish a confirmed persistent copy to a quorum queue, ack
    -> subscriber: the broker's share of the worker's latency on this machine, in this run.
    """
    results: dict[str, Any] = {}
    async with _bare_relay(prefetch) as (source, sink):
        clock = EventClock()
        async with await aio_pika.connect(AMQP_URL) as connection:
            send = await _instrument(connection, sink, clock)
            command = mixed(uuid.uuid4(), [uuid.uuid4() for _ in range(20)], 1)[0]  # a worker-sized body
            for rate in rates:
                with no_collector_pauses():
                    latencies = await _offer(
                        send, clock, [command] * int(rate * seconds), rate, "", queue=source
                    )
                results[f"floor_at_{rate}"] = _summary(latencies)
    return results


async def floor_ladder(rates: list[int], seconds: float, prefetch: int) -> dict[str, Any]:
    """The floor held at each of ``rates`` (ascending) for ``seconds``, until one does not hold
    flat (``_held``): ``steps``, one per rate tried, and ``flat_rate``, the highest that held
    (None when the first did not)."""
    steps: list[dict[str, Any]] = []
    flat_rate: int | None = None
    async with _bare_relay(prefetch) as (source, sink):
        clock = EventClock()
        async with await aio_pika.connect(AMQP_URL) as connection:
            send = await _instrument(connection, sink, clock)
            command = mixed(uuid.uuid4(), [uuid.uuid4() for _ in range(20)], 1)[0]
            for rate in sorted(rates):
                with no_collector_pauses(seconds):
                    latencies = await _offer(
                        send, clock, [command] * int(rate * seconds), rate, "", queue=source
                    )
                step = _held(latencies, rate)
                steps.append(step)
                print(
                    f"sustained floor at {rate}/s for {seconds:.0f} s: p99 by stretch"
                    f" {[s['p99_ms'] for s in step['segments']]} ms, {step['lost']} lost,"
                    f" {'flat' if step['flat'] else 'not flat'}",
                    flush=True,
                )
                if not step["flat"]:
                    break
                flat_rate = rate
    return {"steps": steps, "flat_rate": flat_rate}


async def commit_alone(rate: int, seconds: float, connections: int) -> dict[str, Any]:
    """A PostgreSQL commit on its own, open loop: ``rate`` one-row INSERTs per second for ``seconds``,
    each its own transaction (autocommit) on one of ``connections`` pooled connections; ms from
    each one's scheduled start to its commit returning, summarised as ``_summary`` does.

    The one fsync the worker's path has beyond the floor's, measured at the same offered rate on
    a scratch database (created here, dropped after) with the server's own synchronous_commit,
    which is reported beside the figures (``synchronous_commit``).
    """
    name = f"outplans_bench_commit_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{PG_ROOT}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"{PG_ROOT}/{name}"
    try:
        async with asyncpg.create_pool(url, min_size=connections, max_size=connections) as pool:
            await pool.execute("CREATE TABLE commit_probe (id bigint PRIMARY KEY, at timestamptz, body text)")
            synchronous_commit = await pool.fetchval("SHOW synchronous_commit")
            body = mixed(uuid.uuid4(), [uuid.uuid4() for _ in range(20)], 1)[0][1].decode()
            latencies: list[float] = []

            async def insert(i: int, at: float) -> None:
                # From the scheduled start, or from the actual one when the timer woke early
                # (uvloop's are in whole ms): the commit's own time is never understated.
                started = min(at, time.perf_counter())
                await pool.execute("INSERT INTO commit_probe VALUES ($1, now(), $2)", i, body)
                latencies.append((time.perf_counter() - started) * 1000)

            pending: set[asyncio.Task[None]] = set()
            start = time.perf_counter() + 0.1
            with no_collector_pauses(seconds):
                for i in range(int(rate * seconds)):
                    at = start + i / rate
                    delay = at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    task = asyncio.ensure_future(insert(i, at))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                await asyncio.gather(*pending)
        return {
            **_summary(latencies),
            "rate": rate,
            "connections": connections,
            "synchronous_commit": synchronous_commit,
        }
    finally:
        await drop_database(url)


async def _rpc(
    connection: aio_pika.abc.AbstractConnection, rig: Rig, command: str, rate: int, seconds: float
) -> list[float]:
    """Open-loop requests with ``reply_to`` (direct reply-to); latency from scheduled send to reply."""
    channel = await connection.channel(publisher_confirms=False)
    underlay = await raw_channel(channel)
    sent: dict[str, float] = {}
    got: dict[str, float] = {}

    async def on_reply(msg: DeliveredMessage) -> None:
        got[msg.header.properties.correlation_id or ""] = time.perf_counter()

    await underlay.basic_consume("amq.rabbitmq.reply-to", on_reply, no_ack=True)
    start = time.perf_counter() + 0.1
    for i in range(int(rate * seconds)):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body: dict[str, Any]
        if command == "outplan.get":
            body = {"customer_id": str(rig.customer), "id": str(rig.ids[i % len(rig.ids)])}
        else:
            body = {"customer_id": str(rig.customer), "source": {"type": "tel", "target": "+15559876543"}}
        correlation = str(uuid.uuid4())
        sent[correlation] = min(at, time.perf_counter())  # as in _offer
        await underlay.basic_publish(
            json.dumps(body).encode(),
            exchange=rig.settings.command_exchange,
            routing_key=command,
            properties=spec.Basic.Properties(
                content_type="application/json",
                message_type=command,
                message_id=correlation,
                correlation_id=correlation,
                reply_to="amq.rabbitmq.reply-to",
                delivery_mode=2,
            ),
        )
    deadline = time.perf_counter() + 30
    while len(got) < len(sent) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await channel.close()
    return [(got.get(c, float("inf")) - at) * 1000 for c, at in sent.items()]


# The quantiles each latency summary keeps as its curve: dense where the tail is, so that a plot on
# a "nines" scale (50%, 90%, 99%, 99.9%) is drawn from points spread evenly along it.
CURVE_QUANTILES: tuple[float, ...] = (
    (0.01, 0.02, 0.03, 0.05, 0.07)
    + tuple(round(0.1 + 0.025 * i, 3) for i in range(33))  # 0.1 .. 0.9
    + tuple(round(0.91 + 0.01 * i, 2) for i in range(9))  # 0.91 .. 0.99
    + tuple(round(0.991 + 0.001 * i, 3) for i in range(9))  # 0.991 .. 0.999
)


def _summary(latencies_ms: list[float]) -> dict[str, Any]:
    """Count, lost (never arrived: inf), p50, p99, max and mean in ms, and ``curve``: pairs of
    [quantile, ms] at ``CURVE_QUANTILES`` and [1.0, max], for plotting. A lost command is inf."""
    ordered = sorted(latencies_ms)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else float("nan")

    return {
        "count": len(latencies_ms),
        "lost": sum(1 for ms in latencies_ms if ms == float("inf")),
        "p50_ms": round(percentile(latencies_ms, 0.5), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "max_ms": round(max(latencies_ms), 2),
        "mean_ms": round(statistics.fmean(latencies_ms), 2),
        "curve": [[q, at(q)] for q in CURVE_QUANTILES] + [[1.0, at(1.0)]],
    }


def _stretches(latencies_ms: list[float], rate: int) -> list[dict[str, Any]]:
    """A sustained run cut into stretches by send time (``latencies_ms`` in send order, sent at
    ``rate`` per second): minutes when it lasted 5 min or more (the last one takes the remainder),
    fifths when shorter. Each: from_s, to_s (seconds into the run), count, lost, p50_ms, p99_ms."""
    seconds = len(latencies_ms) / rate
    pieces = int(seconds // 60) if seconds >= 300 else 5
    size = len(latencies_ms) // pieces if pieces else 0
    stretches = []
    for k in range(pieces):
        part = latencies_ms[k * size : (k + 1) * size if k < pieces - 1 else len(latencies_ms)]
        if not part:
            continue
        stretches.append(
            {
                "from_s": round(k * size / rate, 1),
                "to_s": round((k * size + len(part)) / rate, 1),
                "count": len(part),
                "lost": sum(1 for ms in part if ms == float("inf")),
                "p50_ms": round(percentile(part, 0.5), 2),
                "p99_ms": round(percentile(part, 0.99), 2),
            }
        )
    return stretches


def _held(latencies_ms: list[float], rate: int) -> dict[str, Any]:
    """A sustained run at ``rate``: its summary, its stretches and whether it held flat (nothing
    lost, last stretch's p99 at most 1.5 x the first's; ``bench.targets.is_flat``)."""
    stretches = _stretches(latencies_ms, rate)
    lost = sum(s["lost"] for s in stretches)
    flat = bool(stretches) and is_flat(stretches[0]["p99_ms"], stretches[-1]["p99_ms"], lost)
    return {
        "rate": rate,
        "lost": lost,
        "flat": flat,
        "segments": stretches,
        "summary": _summary(latencies_ms),
    }


def run(main: Coroutine[Any, Any, T]) -> T:
    """Each part of the run on its own event loop: uvloop, as the worker's, so that the
    instrument's own cycles (taken from the same two cores) are as few as they can be."""
    return uvloop.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50_000, help="saturation backlog for the worker")
    parser.add_argument("--baseline-commands", type=int, default=5_000)
    parser.add_argument("--ceiling-messages", type=int, default=30_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--soak", type=float, default=0.0, help="seconds at 1,000/s after the latency runs")
    parser.add_argument("--prefetch", type=int, default=Settings().prefetch)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds; the table shows medians")
    parser.add_argument(
        "--sustained",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="hold the floor at each --sustained-rates for SECONDS until its p99 climbs, then the worker"
        " at 0.8 x the highest flat rate for SECONDS (0: skip; long)",
    )
    parser.add_argument(
        "--sustained-rates",
        type=lambda text: [int(rate) for rate in text.split(",")],
        default=[500, 750, 1000, 1250, 1500],
        metavar="R1,R2,...",
        help="the floor's ladder of offered rates for --sustained, per second (default %(default)s)",
    )
    args = parser.parse_args()

    body = mixed(uuid.uuid4(), [uuid.uuid4() for _ in range(20)], 1)[0][1]
    results: dict[str, Any] = {"prefetch": args.prefetch, "rounds": []}
    # Throughput in rounds, each measuring all four in a row: a ratio is taken within a round,
    # where the machine was the same, and the medians across rounds are what the table shows.
    for n in range(1, args.rounds + 1):
        ceil, ceil_cpu = run(ceiling(args.ceiling_messages, args.prefetch, body))
        bare, bare_cpu = run(bare_saturation(args.ceiling_messages, args.prefetch, body))
        base = run(baseline(args.baseline_commands))
        one = run(saturation(args.commands, 1))
        two = run(saturation(args.commands, 2))
        results["rounds"].append(
            {
                "ceiling_per_second": ceil,
                "ceiling_cpu_ms_per_message": ceil_cpu,
                "bare_relay_per_second": bare,
                "bare_relay_cpu_ms_per_message": bare_cpu,
                "baseline_per_second": base,
                "worker_one": one,
                "worker_two": two,
                "ratio_worker_to_ceiling": one["per_second"] / ceil,
                "ratio_worker_to_baseline": one["per_second"] / base,
                "ratio_two_to_one": two["per_second"] / one["per_second"],
            }
        )
        print(
            f"round {n}: ceiling {ceil:,.0f}/s ({ceil_cpu:.3f} ms CPU each), bare relay {bare:,.0f}/s"
            f" ({bare_cpu:.3f} ms), baseline {base:,.0f}/s, worker x1 {one['per_second']:,.0f}/s"
            f" ({one['cpu_ms_per_command']:.3f} ms, peak RSS {one['peak_rss_mb'][0]:.0f} MB),"
            f" worker x2 {two['per_second']:,.0f}/s ({two['cpu_ms_per_command']:.3f} ms)",
            flush=True,
        )
    rounds = results["rounds"]
    for key in (
        "ceiling_per_second",
        "ceiling_cpu_ms_per_message",
        "bare_relay_per_second",
        "bare_relay_cpu_ms_per_message",
        "baseline_per_second",
        "ratio_worker_to_ceiling",
        "ratio_worker_to_baseline",
        "ratio_two_to_one",
    ):
        results[key] = median([r[key] for r in rounds])
    results["worker_one_per_second"] = median([r["worker_one"]["per_second"] for r in rounds])
    results["worker_two_per_second"] = median([r["worker_two"]["per_second"] for r in rounds])
    for workers in ("one", "two"):
        results[f"worker_{workers}_cpu_ms_per_command"] = median(
            [r[f"worker_{workers}"]["cpu_ms_per_command"] for r in rounds]
        )
    results["peak_rss_mb"] = max(
        mb for r in rounds for mb in r["worker_one"]["peak_rss_mb"] + r["worker_two"]["peak_rss_mb"]
    )
    results.update(run(floor([500, 1000], args.latency_seconds, args.prefetch)))
    results["commit_alone_at_500"] = run(commit_alone(500, args.latency_seconds, Settings().db_pool_size))
    held: tuple[int, float] | None = None
    if args.sustained:
        ladder = run(floor_ladder(args.sustained_rates, args.sustained, args.prefetch))
        results["sustained"] = {
            "seconds": args.sustained,
            "floor_ladder": ladder["steps"],
            "floor_flat_rate": ladder["flat_rate"],
        }
        if ladder["flat_rate"] is not None:
            held = (round(0.8 * ladder["flat_rate"]), args.sustained)
    results.update(run(open_loop([500, 1000], args.latency_seconds, 500, args.soak, held)))
    if "sustained_worker" in results:
        results["sustained"]["worker"] = results.pop("sustained_worker")
    for rate in (500, 1000):
        results[f"ratio_p99_to_floor_at_{rate}"] = (
            results[f"events_at_{rate}"]["p99_ms"] / results[f"floor_at_{rate}"]["p99_ms"]
        )

    of = f"median of {args.rounds}" if args.rounds > 1 else "one round"
    rows = [
        (f"ceiling: consume -> confirmed publish -> ack ({of})", f"{results['ceiling_per_second']:,.0f}/s"),
        ("bare relay process, saturation", f"{results['bare_relay_per_second']:,.0f}/s"),
        ("baseline: prefetch 1, tx per message", f"{results['baseline_per_second']:,.0f}/s"),
        ("worker, saturation, 1 process", f"{results['worker_one_per_second']:,.0f}/s"),
        ("worker, saturation, 2 processes", f"{results['worker_two_per_second']:,.0f}/s"),
        ("CPU per message: ceiling relay (this process)", f"{results['ceiling_cpu_ms_per_message']:.3f} ms"),
        ("CPU per message: bare relay process", f"{results['bare_relay_cpu_ms_per_message']:.3f} ms"),
        ("CPU per command: worker, 1 process", f"{results['worker_one_cpu_ms_per_command']:.3f} ms"),
        (
            "CPU per command: workers, 2 processes together",
            f"{results['worker_two_cpu_ms_per_command']:.3f} ms",
        ),
        ("worker / ceiling", f"{results['ratio_worker_to_ceiling']:.2f}"),
        ("worker / baseline", f"{results['ratio_worker_to_baseline']:.2f}"),
        ("2 processes / 1", f"{results['ratio_two_to_one']:.2f}"),
        ("peak RSS at saturation", f"{results['peak_rss_mb']:.0f} MB"),
    ]
    for key, value in results.items():
        if isinstance(value, dict) and "p99_ms" in value:
            rows.append(
                (
                    f"{key.replace('_', ' ')} p50/p99/max",
                    f"{value['p50_ms']}/{value['p99_ms']}/{value['max_ms']} ms",
                )
            )
    for rate in (500, 1000):
        rows.append((f"events p99 / floor p99 at {rate}", f"{results[f'ratio_p99_to_floor_at_{rate}']:.2f}"))
    if "soak" in results:
        soak = results["soak"]
        rows.append(
            (
                f"soak {soak['seconds']:.0f}s RSS start -> end",
                f"{soak['rss_mb_start'][0]:.0f} -> {soak['rss_mb_end'][0]:.0f} MB",
            )
        )
        rows.append(
            (
                "soak RSS max, first half / second half",
                f"{soak['rss_mb_max_first_half']:.0f} / {soak['rss_mb_max_second_half']:.0f} MB",
            )
        )
        rows.append(
            (
                "soak events p50/p99/max",
                f"{soak['latency']['p50_ms']}/{soak['latency']['p99_ms']}/{soak['latency']['max_ms']} ms",
            )
        )
    if "sustained" in results:
        sustained = results["sustained"]
        rows.append(("sustained: floor's highest flat rate", f"{sustained['floor_flat_rate'] or '-'}/s"))
        if "worker" in sustained:
            worker = sustained["worker"]
            p99s = "/".join(f"{s['p99_ms']:.0f}" for s in worker["segments"])
            rows.append((f"sustained: worker at {worker['rate']}/s, p99 by stretch", f"{p99s} ms"))
    print()
    for name, value in rows:
        print(f"{name:<58}{value:>22}")
    found = targets(results)
    results["targets"] = [target.as_dict() for target in found]
    print("\ntargets (bounds from this run):")
    for target in found:
        print(f"  {target.line()}")
    path = save("throughput", results)
    print(f"written to {path}")
    try:
        from bench.plots import draw
    except ModuleNotFoundError as missing:
        if not (missing.name or "").startswith("matplotlib"):
            raise
        print("no figure: matplotlib is not installed (pip install -e '.[bench]' installs the bench extra)")
    else:
        print(f"figure: {draw(results, path)}")


if __name__ == "__main__":
    main()
