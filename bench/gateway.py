"""What the HTTP gateway adds to an RPC: ``GET /v1.0/outplans/{id}`` against the same ``outplan.get``
sent straight over AMQP, at one fixed offered rate, in the same run.

    .venv/bin/python -m bench.gateway            # 3 rounds of 20 s per path at 100/s
    .venv/bin/python -m bench.gateway --quick    # 1 round of 5 s per path at 100/s

Starts a worker (``outplan-worker run``) and a gateway (``outplan-worker gateway``) from their
console scripts, on a fresh database and fresh exchange and queue names, and creates one outplan.
Each round sends the get at ``--rate`` per second, open loop (request i is due at t0 + i / rate;
its latency runs from then, so a stall delays the requests behind it and shows in the tail): once
through the gateway over keep-alive HTTP/1.1 connections, once with ``OutplanClient`` on one AMQP
connection (direct reply-to), the two paths alternating. The HTTP client is h11 (the protocol
library uvicorn serves with) over asyncio streams, a pool of connections, so that the figure is
the gateway's, not a heavier client's. Prints requests/s and p50/p99 per path and the
difference, and writes bench/results/gateway-*.json.
"""

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import h11
from pydantic import SecretStr

from bench.common import AMQP_URL, drop_database, fresh_database, save
from worker.client import connect_when_ready
from worker.gateway.auth import mint
from worker.gateway.settings import GatewaySettings

SECRET = "bench-secret-" + "b" * 32


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, from /proc/<pid>/stat (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


IDLE_SECONDS = 4.0  # below uvicorn's keep-alive timeout (5 s), after which the server closes


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one host; ``get(path)`` returns (status, body).

    A connection idle for ``IDLE_SECONDS`` is closed rather than reused, as a browser or an HTTP
    library would: the server may have closed it meanwhile."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection, float]] = []

    async def get(self, path: str) -> tuple[int, bytes]:
        now = time.monotonic()
        if self._idle and now - self._idle[0][3] > IDLE_SECONDS:  # the oldest first: any to drop?
            for stale in [c for c in self._idle if now - c[3] > IDLE_SECONDS]:
                stale[1].close()
            self._idle = [c for c in self._idle if now - c[3] <= IDLE_SECONDS]
        if self._idle:
            reader, writer, conn, _ = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
            conn = h11.Connection(h11.CLIENT)
        request = h11.Request(method="GET", target=path, headers=[("Host", "bench")])
        writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
        status, body = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        conn.start_next_cycle()
        self._idle.append((reader, writer, conn, time.monotonic()))
        return status, body

    def close(self) -> None:
        for _, writer, _, _ in self._idle:
            writer.close()


async def open_loop(send: Any, rate: float, seconds: float) -> dict[str, float]:
    """Call ``send()`` at ``rate`` per second for ``seconds``; latency from each request's due time."""
    count = int(rate * seconds)
    latencies: list[float] = []
    failures = 0
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(due: float) -> None:
        nonlocal failures
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            ok = await send()
        except Exception:  # noqa: BLE001 - counted, not raised: the run goes on
            ok = False
        if ok:
            latencies.append(loop.time() - due)
        else:
            failures += 1

    await asyncio.gather(*(one(started + i / rate) for i in range(count)))
    took = loop.time() - started
    return {
        "requests": count,
        "failures": failures,
        "per_second": len(latencies) / took,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
    }


def _spawn(args: list[str], env: dict[str, str], log: Path) -> "subprocess.Popen[bytes]":
    script = Path(sys.executable).parent / "outplan-worker"
    with log.open("ab") as out:
        return subprocess.Popen([str(script), *args], env=env, stdout=out, stderr=subprocess.STDOUT)


async def _ready(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            pool = HttpPool(port)
            if (await pool.get("/readyz"))[0] == 200:
                pool.close()
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("the gateway did not become ready")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="offered requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round of 5 s at 100/s")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.seconds, args.rounds = 100.0, 5.0, 1
    import uvloop

    uvloop.install()
    database = await fresh_database()
    tag = uuid.uuid4().hex[:8]
    names = {
        "OUTPLAN_COMMAND_EXCHANGE": f"bench-{tag}.commands",
        "OUTPLAN_COMMAND_QUEUE": f"bench-{tag}.worker.commands",
        "OUTPLAN_DEAD_LETTER_EXCHANGE": f"bench-{tag}.dlx",
        "OUTPLAN_DEAD_LETTER_QUEUE": f"bench-{tag}.worker.commands.dead",
        "OUTPLAN_EVENT_EXCHANGE": f"bench-{tag}.events",
    }
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OUTPLAN_")},
        **names,
        "OUTPLAN_AMQP_URL": AMQP_URL,
        "OUTPLAN_DATABASE_URL": database,
        "OUTPLAN_METRICS_PORT": str(_free_port()),
        "OUTPLAN_JWT_SECRET": SECRET,
        "OUTPLAN_GATEWAY_PORT": str(port),
        "OUTPLAN_GATEWAY_HOST": "127.0.0.1",
        "OUTPLAN_LOG_LEVEL": "WARNING",
    }
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    worker = _spawn(["run"], env, logs / f"bench-gateway-worker-{tag}.log")
    gateway = _spawn(["gateway"], env, logs / f"bench-gateway-{tag}.log")
    connection = await aio_pika.connect(AMQP_URL)
    rounds: list[dict[str, Any]] = []
    try:
        client = await connect_when_ready(connection, exchange=names["OUTPLAN_COMMAND_EXCHANGE"])
        await _ready(port)
        customer = uuid.uuid4()
        created = await client.create(
            customer, source={"type": "tel", "target": "+15559876543"}, name="bench"
        )
        outplan_id = created.data["id"]
        token = mint(GatewaySettings(jwt_secret=SecretStr(SECRET)), customer, ttl=3600)
        pool = HttpPool(port)
        path = f"/v1.0/outplans/{outplan_id}?token={token}"

        async def through_gateway() -> bool:
            return (await pool.get(path))[0] == 200

        async def over_amqp() -> bool:
            return (await client.get(customer, outplan_id)).status_code == 200

        for sender in (through_gateway, over_amqp):  # warm-up: connections, caches
            await open_loop(sender, args.rate, 1.0)
        for i in range(args.rounds):
            measured = {}
            order = [("gateway", through_gateway), ("amqp", over_amqp)]
            for name, sender in order if i % 2 == 0 else order[::-1]:
                before = cpu_seconds(gateway.pid), cpu_seconds(worker.pid)
                measured[name] = await open_loop(sender, args.rate, args.seconds)
                count = measured[name]["requests"]
                measured[name]["gateway_cpu_ms_per_request"] = (
                    (cpu_seconds(gateway.pid) - before[0]) * 1000 / count
                )
                measured[name]["worker_cpu_ms_per_request"] = (
                    (cpu_seconds(worker.pid) - before[1]) * 1000 / count
                )
            rounds.append(measured)
            g, a = measured["gateway"], measured["amqp"]
            print(
                f"round {i + 1}: gateway {g['per_second']:.0f}/s p50 {g['p50_ms']:.2f} p99 {g['p99_ms']:.2f}"
                f" ms ({g['failures']:.0f} failed) | amqp {a['per_second']:.0f}/s p50 {a['p50_ms']:.2f}"
                f" p99 {a['p99_ms']:.2f} ms ({a['failures']:.0f} failed)"
                f" | p50 +{g['p50_ms'] - a['p50_ms']:.2f} ms"
                f" | gateway CPU {g['gateway_cpu_ms_per_request']:.2f} ms/request,"
                f" worker CPU {g['worker_cpu_ms_per_request']:.2f} / {a['worker_cpu_ms_per_request']:.2f}"
            )
        pool.close()
    finally:
        await connection.close()
        for process in (gateway, worker):
            process.send_signal(signal.SIGTERM)
        for process in (gateway, worker):
            process.wait(30)
        async with await aio_pika.connect(AMQP_URL) as cleanup:
            channel = await cleanup.channel()
            for queue in (names["OUTPLAN_COMMAND_QUEUE"], names["OUTPLAN_DEAD_LETTER_QUEUE"]):
                await channel.queue_delete(queue)
            for exchange in (
                "OUTPLAN_COMMAND_EXCHANGE",
                "OUTPLAN_DEAD_LETTER_EXCHANGE",
                "OUTPLAN_EVENT_EXCHANGE",
            ):
                await channel.exchange_delete(names[exchange])
        await drop_database(database)

    def med(path: str, key: str) -> float:
        return float(statistics.median(r[path][key] for r in rounds))

    summary = {
        "gateway_p50_ms": med("gateway", "p50_ms"),
        "gateway_p99_ms": med("gateway", "p99_ms"),
        "amqp_p50_ms": med("amqp", "p50_ms"),
        "amqp_p99_ms": med("amqp", "p99_ms"),
        "gateway_per_second": med("gateway", "per_second"),
        "amqp_per_second": med("amqp", "per_second"),
    }
    summary["added_p50_ms"] = summary["gateway_p50_ms"] - summary["amqp_p50_ms"]
    summary["added_p99_ms"] = summary["gateway_p99_ms"] - summary["amqp_p99_ms"]
    summary["p50_ratio"] = summary["gateway_p50_ms"] / summary["amqp_p50_ms"]
    g50, g99, a50, a99 = (
        summary[k] for k in ("gateway_p50_ms", "gateway_p99_ms", "amqp_p50_ms", "amqp_p99_ms")
    )
    print(
        f"median of {args.rounds} round(s) at {args.rate:g}/s offered:"
        f" gateway {summary['gateway_per_second']:.0f}/s, p50 {g50:.2f} ms, p99 {g99:.2f} ms;"
        f" direct AMQP {summary['amqp_per_second']:.0f}/s, p50 {a50:.2f} ms, p99 {a99:.2f} ms;"
        f" the gateway adds {g50 - a50:.2f} ms at p50 (x{g50 / a50:.2f}), {g99 - a99:.2f} ms at p99"
    )
    print(
        "results:",
        save("gateway", {"rate": args.rate, "seconds": args.seconds, "rounds": rounds, "summary": summary}),
    )


if __name__ == "__main__":
    asyncio.run(main())
