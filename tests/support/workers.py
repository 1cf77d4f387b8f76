"""Start and stop real worker processes on names of their own."""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import aio_pika
import aio_pika.abc
import aio_pika.exceptions

from tests.conftest import AMQP_URL
from worker.client import connect_when_ready


@dataclass
class WorkerNames:
    """A worker's exchanges and queues, named ``test-<8 hex>.*`` so that tests never share them."""

    command_exchange: str
    command_queue: str
    dead_letter_exchange: str
    dead_letter_queue: str
    event_exchange: str

    #: Every set handed out in this session: ``tests/conftest.py`` deletes them all at its end,
    #: whether or not the test that took them did (durable queues nobody consumes stay forever).
    handed_out: ClassVar[list["WorkerNames"]] = []

    @classmethod
    def fresh(cls) -> "WorkerNames":
        s = uuid.uuid4().hex[:8]
        names = cls(
            f"test-{s}.commands",
            f"test-{s}.worker.commands",
            f"test-{s}.dlx",
            f"test-{s}.worker.commands.dead",
            f"test-{s}.events",
        )
        cls.handed_out.append(names)
        return names

    def env(self) -> dict[str, str]:
        return {f"OUTPLAN_{k.upper()}": v for k, v in self.__dict__.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


REPO_ROOT = Path(__file__).resolve().parents[2]  # where worker processes start, so `-m tests...` resolves

Launcher = Callable[[], list[str]]  # the argv that starts a worker, before its subcommand (`run`)


def worker_command() -> list[str]:
    """The ``outplan-worker`` console script: the worker as it is deployed (the default launcher)."""
    script = shutil.which("outplan-worker", path=str(Path(sys.executable).parent)) or shutil.which(
        "outplan-worker"
    )
    assert script, "the outplan-worker console script is not installed"
    return [script]


def faulty_worker_command() -> list[str]:
    """``python -m tests.support.faulty_worker``: the real worker, but a create whose name is
    ``tests.support.faulty_worker.MARKER`` raises ``InjectedFault`` (see that module)."""
    return [sys.executable, "-m", "tests.support.faulty_worker"]


@dataclass
class WorkerProcess:
    """One ``outplan-worker run`` process; ``restart()`` starts a new one on the same settings.

    ``command`` is the launcher's argv (before ``run``) it was started with, and is restarted with.
    """

    names: WorkerNames
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    command: list[str]
    starts: int = 1

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def restart(self) -> None:
        assert self.process.poll() is not None, "stop or kill it first"
        self.process = _spawn(self.command, self.env, self.log_path)
        self.starts += 1

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_entries(self) -> list[dict[str, Any]]:
        """Every JSON log line, parsed, in order."""
        found = []
        for line in self.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
        return found

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines whose ``event`` is this message."""
        return [entry for entry in self.log_entries() if entry.get("event") == event]

    def wait_for_log_event(self, event: str, seconds: float = 10) -> dict[str, Any]:
        """The first JSON log line whose ``event`` is this message, once the worker has written it.

        Raises ``TimeoutError`` (with the log) when it has not appeared within ``seconds``.
        """
        deadline = time.monotonic() + seconds
        while not (found := self.log_events(event)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event!r} in the worker's log within {seconds} s:\n{self.log()}")
            time.sleep(0.02)
        return found[0]

    @property
    def metrics_port(self) -> int:
        return int(self.env["OUTPLAN_METRICS_PORT"])


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> "subprocess.Popen[bytes]":
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [*command, "run"], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )


async def wait_until_answering(names: WorkerNames, seconds: float = 30) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        await connect_when_ready(connection, exchange=names.command_exchange, seconds=seconds)


def start_worker(
    database_url: str,
    log_dir: Path,
    names: WorkerNames | None = None,
    *,
    wait: bool = True,
    launcher: Launcher = worker_command,
    **settings: str,
) -> WorkerProcess:
    """Start ``<launcher> run`` on ``names`` (fresh ones by default), with ``settings`` as
    ``OUTPLAN_<NAME>`` variables over the test defaults; its output goes to a log in ``log_dir``.

    With ``wait``, returns once it answers commands; a worker that does not is killed and a
    ``RuntimeError`` carrying its log is raised. ``launcher=faulty_worker_command`` starts the
    worker whose create handler fails for a marker name.
    """
    names = names or WorkerNames.fresh()
    env = {
        **os.environ,
        **names.env(),
        "OUTPLAN_DATABASE_URL": database_url,
        "OUTPLAN_AMQP_URL": AMQP_URL,
        "OUTPLAN_RELAY_POLL_SECONDS": "0.2",
        "OUTPLAN_METRICS_PORT": str(free_port()),
        **{f"OUTPLAN_{k.upper()}": v for k, v in settings.items()},
    }
    log_path = log_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
    command = launcher()
    worker = WorkerProcess(names, env, _spawn(command, env, log_path), log_path, command)
    if wait:
        try:
            asyncio.run(wait_until_answering(names))
        except BaseException:  # noqa: BLE001 - pytest-timeout's failure is a BaseException too
            # Whatever stopped the wait, the worker is killed, and its log is what explains a start
            # that did not finish.
            worker.process.kill()
            raise RuntimeError("worker did not start:\n" + worker.log()) from None
    return worker


async def bind_full_subscriber(names: WorkerNames) -> str:
    """A subscriber queue bound with ``#`` that is full and refuses every event (``reject-publish``).

    The relay re-publishes each refused event with backoff for about 15 s before giving up on it,
    so meanwhile the outbox cannot empty. The queue expires a minute after its last use.
    """
    name = f"test-full-{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            name, arguments={"x-max-length": 1, "x-overflow": "reject-publish", "x-expires": 60_000}
        )
        await channel.default_exchange.publish(aio_pika.Message(b"filler"), routing_key=name)
        await queue.bind(names.event_exchange, routing_key="#")
    return name


async def delete_all_handed_out() -> None:
    """Delete the queues and exchanges of every ``WorkerNames.fresh()`` of this session (those
    already gone are no error); a broker that cannot be reached is left as it is."""
    if not WorkerNames.handed_out:
        return
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
    except (OSError, aio_pika.exceptions.AMQPError):
        return
    async with connection:
        for names in WorkerNames.handed_out:
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await delete_names(names, connection)
    WorkerNames.handed_out.clear()


async def delete_names(names: WorkerNames, connection: aio_pika.abc.AbstractConnection | None = None) -> None:
    """Delete a worker's queues and exchanges (on ``connection``, or on one of its own)."""
    if connection is None:
        async with await aio_pika.connect(AMQP_URL) as own:
            await delete_names(names, own)
        return
    channel = await connection.channel()
    try:
        for queue in (names.command_queue, names.dead_letter_queue):
            await channel.queue_delete(queue)
        for exchange in (names.command_exchange, names.dead_letter_exchange, names.event_exchange):
            await channel.exchange_delete(exchange)
    finally:
        if not channel.is_closed:
            await channel.close()
