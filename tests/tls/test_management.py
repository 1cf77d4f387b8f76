"""Passive declaration with the management API: the worker compares the queues' arguments and the
exchanges' types with what it would declare, against a real management plugin (the suite's own
node; the machine's broker runs without the plugin)."""

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import aio_pika
import pytest

from tests.support.workers import WorkerNames, worker_command
from tests.tls.conftest import Servers, env
from tests.tls.servers import MANAGEMENT_PORT
from worker.client import connect_when_ready
from worker.messaging import topology
from worker.settings import Settings

pytestmark = pytest.mark.tls

API = f"http://guest:guest@127.0.0.1:{MANAGEMENT_PORT}"


async def _declare_as_administrator(servers: Servers, names: WorkerNames, delivery_limit: int = 20) -> None:
    settings = Settings(
        command_exchange=names.command_exchange,
        command_queue=names.command_queue,
        dead_letter_exchange=names.dead_letter_exchange,
        dead_letter_queue=names.dead_letter_queue,
        event_exchange=names.event_exchange,
        queue_delivery_limit=delivery_limit,
    )
    async with await aio_pika.connect(servers.amqp_url()) as connection:
        await topology.declare(await connection.channel(), settings)


def _settings(servers: Servers, names: WorkerNames, api: str = API) -> dict[str, str]:
    return {
        **{k.removeprefix("OUTPLAN_").lower(): v for k, v in names.env().items()},
        "amqp_url": servers.amqp_url(),
        "database_url": servers.database_url(),
        "topology": "passive",
        "management_url": api,
    }


def _run(settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*worker_command(), "run"], env=env(**settings), capture_output=True, text=True, timeout=60
    )


def _errors(stderr: str) -> list[str]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [str(line["event"]) for line in lines if line.get("level") == "error"]


def test_a_topology_as_declared_passes_the_comparison(servers: Servers, tmp_path: Path) -> None:
    names = WorkerNames.fresh()
    asyncio.run(_declare_as_administrator(servers, names))
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [*worker_command(), "run"],
            env=env(**_settings(servers, names)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def answered() -> None:
        async with await aio_pika.connect(servers.amqp_url()) as connection:
            await connect_when_ready(connection, exchange=names.command_exchange, seconds=60)

    try:
        asyncio.run(answered())
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log_path.read_text()
    assert _errors(log_path.read_text()) == []


def test_a_queue_declared_with_other_arguments_is_refused_naming_the_difference(servers: Servers) -> None:
    names = WorkerNames.fresh()
    asyncio.run(_declare_as_administrator(servers, names, delivery_limit=7))
    done = subprocess.run(
        [*worker_command(), "run"],
        env=env(**_settings(servers, names)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 78, done.stderr
    [line] = _errors(done.stderr)
    assert f"queue '{names.command_queue}': argument x-delivery-limit is 7, expected 20" in line
    assert "Traceback" not in done.stderr


def test_a_management_user_refused_is_one_line(servers: Servers) -> None:
    names = WorkerNames.fresh()
    asyncio.run(_declare_as_administrator(servers, names))
    wrong = API.replace("guest:guest@", "guest:wrong@")
    done = subprocess.run(
        [*worker_command(), "run"],
        env=env(**_settings(servers, names, wrong)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 78, done.stderr
    [line] = _errors(done.stderr)
    assert "management API answered 401" in line and "wrong" not in line
