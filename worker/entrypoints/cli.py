"""``outplan-worker``: migrate, run (consumer + relay), relay (alone), check, replay, tail, schema, demo,
gateway (the HTTP gateway)."""

import argparse
import asyncio
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

import structlog

from .. import logs
from ..app import misconfiguration, serve
from ..handlers import REGISTRY, Registry
from ..observability import LIVEZ, READYZ
from ..observability.tracing import TracingMisconfigured, configure_tracing
from ..persistence.migrate import migrate
from ..refusals import EX_CONFIG, Misconfigured
from ..settings import InvalidSettings, Settings, load
from . import replay as replay_args
from . import tail as tail_args

log = structlog.get_logger("outplan_worker")


def install_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (a graceful stop); a second one exits the process at once (1)."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: exiting at once", signal=signal.Signals(signum).name)
            os._exit(1)
        log.info("signal received", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


async def _serve(settings: Settings, *, consume: bool, handlers: Registry) -> None:
    stop = asyncio.Event()
    install_signals(stop)
    await serve(settings, stop, consume=consume, handlers=handlers)


def check_health(settings: Settings, *, live: bool) -> int:
    """Ask the local worker's health endpoint (/readyz, or /livez with ``live``) on 127.0.0.1 at
    ``metrics_port``: 0 when it answers 200 (its JSON printed), else 1 (the reason on stderr).

    78 (``EX_CONFIG``) with one line when ``metrics_port`` is 0: the worker then serves no HTTP
    port, so no check could ever pass; a probe must not report that as "not ready"."""
    if settings.metrics_port == 0:
        print(
            "check: needs the worker's HTTP port, which OUTPLAN_METRICS_PORT=0 turns off: "
            "give the worker and check the same OUTPLAN_METRICS_PORT (default 9464)",
            file=sys.stderr,
        )
        return EX_CONFIG
    path = LIVEZ if live else READYZ
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}{path}", timeout=5) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(), file=sys.stderr)
    except OSError as exc:
        print(f"check: no worker answers on port {settings.metrics_port}: {exc}", file=sys.stderr)
    return 1


def _traced(args: argparse.Namespace, settings: Settings, handlers: Registry) -> int:
    """``run``, ``relay`` or ``replay``, with tracing configured; returns the exit code."""
    if args.command == "replay":
        return asyncio.run(replay_args.replay(args, settings))
    if settings.uvloop:
        import uvloop  # a faster event loop: the worker spends much of its time in socket I/O

        uvloop.install()
    try:
        asyncio.run(_serve(settings, consume=args.command == "run", handlers=handlers))
    except Misconfigured as exc:
        if not exc.reported:  # found at start; one found while running was logged then
            log.error(f"cannot start: {exc}", exit_code=EX_CONFIG)
        return EX_CONFIG
    return 0


def main(argv: list[str] | None = None, *, handlers: Registry = REGISTRY) -> int:
    """Run one ``outplan-worker`` command: ``argv`` (``sys.argv[1:]`` when ``None``) and the
    ``OUTPLAN_*`` environment; returns the exit code (2: invalid settings, 78: misconfigured).
    Invalid arguments raise ``SystemExit(2)`` from argparse.

    ``handlers`` is the registry ``run`` serves commands with, ``worker.handlers.REGISTRY`` unless
    a launcher that embeds the worker passes another (the tests start a worker whose create
    handler fails this way); the other commands ignore it.
    """
    parser = argparse.ArgumentParser(prog="outplan-worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if needed and apply pending migrations")
    sub.add_parser("run", help="consume commands and publish events (migrate first)")
    sub.add_parser("relay", help="publish events from the outbox only")
    check = sub.add_parser(
        "check",
        help="exit 0 when the local worker is ready (or live), 1 otherwise, "
        "78 when OUTPLAN_METRICS_PORT=0 leaves nothing to ask",
    )
    check.add_argument("--live", action="store_true", help="liveness only: the worker's loop answers")
    check.add_argument(
        "--gateway",
        action="store_true",
        help="ask the local gateway on OUTPLAN_GATEWAY_PORT instead (ready: its broker connection is up)",
    )
    schema = sub.add_parser(
        "schema", help="write the JSON Schemas and the AsyncAPI document of the interface"
    )
    schema.add_argument(
        "out_dir", nargs="?", default="schema", help="folder to write into (default: ./schema)"
    )
    replay_parser = sub.add_parser("replay", help="publish past events again from the event log or a file")
    replay_args.add_arguments(replay_parser)
    tail_parser = sub.add_parser("tail", help="print live events as they arrive")
    tail_args.add_arguments(tail_parser)
    demo = sub.add_parser("demo", help="send the tutorial's six operations; print replies and events")
    demo.add_argument("--start-worker", action="store_true", help="migrate and start a worker for the demo")
    sub.add_parser(
        "gateway", help="serve the tutorial's REST calls over HTTP, each as one command (needs [gateway])"
    )
    args = parser.parse_args(argv)
    if args.command == "gateway":
        from .gateway import gateway

        return gateway()
    if args.command == "check" and args.gateway:
        from .gateway import check_gateway

        return check_gateway(live=args.live)

    try:
        settings = load()
    except InvalidSettings as exc:
        return exc.report("outplan-worker")
    logs.configure(settings.log_level)
    dsn = settings.database_url.get_secret_value()
    if args.command == "migrate":
        try:
            applied = asyncio.run(migrate(dsn, event_source=settings.event_source))
        except Exception as exc:
            permanent = misconfiguration("database", exc)
            if permanent is None:
                raise
            log.error(f"cannot migrate: {permanent}", exit_code=EX_CONFIG)
            return EX_CONFIG
        print(f"{len(applied)} migration(s) applied" + (": " + ", ".join(applied) if applied else ""))
        return 0
    if args.command in ("run", "relay", "replay"):
        # The commands that consume or publish record spans when the OpenTelemetry SDK is installed.
        try:
            shutdown_tracing = configure_tracing()
        except TracingMisconfigured as exc:
            log.error(f"cannot start: {exc}", exit_code=EX_CONFIG)
            return EX_CONFIG
        try:
            return _traced(args, settings, handlers)
        finally:
            shutdown_tracing()  # exports the spans still buffered
    if args.command == "schema":
        from contracts.documents import TOPOLOGY_NAMES

        from ..schema_docs import write_documents

        written = write_documents(Path(args.out_dir), **settings.model_dump(include=set(TOPOLOGY_NAMES)))
        print("\n".join(str(path) for path in written))
        return 0
    if args.command == "check":
        return check_health(settings, live=args.live)
    if args.command == "tail":
        return asyncio.run(tail_args.tail(args, settings))
    if args.command == "demo":
        from .demo import demo_with_worker, run_demo

        if args.start_worker:
            asyncio.run(migrate(dsn, event_source=settings.event_source))
            return demo_with_worker(settings)
        return asyncio.run(run_demo(settings))
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
