"""The worker, replay, tail and outplanctl through TLS: ``amqps://`` with CA verification and a
client certificate, PostgreSQL with ``sslmode=verify-full``. A wrong CA or a host name the
certificate is not issued for is refused at once, in one line naming the server and the
certificate, exit 78; never retried, never downgraded to plaintext (the database would let a
plaintext client in, see ``servers.PostgresTls``)."""

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from tests.support.workers import worker_command
from tests.tls.conftest import Servers, env
from worker.client import connect_when_ready

pytestmark = pytest.mark.tls

CUSTOMER = "6a4ac1a4-7d4f-4c61-9c0e-0c8e2d1f5d11"
SOURCE = ["--source-type", "tel", "--source-target", "+15559876543"]


def _console(name: str) -> list[str]:
    return [str(Path(worker_command()[0]).with_name(name))]


def _run(argv: list[str], **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env(**settings), capture_output=True, text=True, timeout=60)


@pytest.fixture
def worker(servers: Servers, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [*worker_command(), "run"],
        env=env(amqp_url=servers.amqp_url(), database_url=servers.database_url(), relay_poll_seconds="0.2"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    async def ready() -> None:
        async with await aio_pika.connect(servers.amqp_url()) as connection:
            await connect_when_ready(connection, seconds=60)

    try:
        asyncio.run(ready())
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        log.close()
        assert code == 0, (tmp_path / "worker.log").read_text()


async def _connections_without_tls(servers: Servers) -> tuple[int, int]:
    """(client connections to the database without TLS, with TLS), from pg_stat_ssl."""
    conn = await asyncpg.connect(servers.database_url())
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE NOT s.ssl) AS plain, count(*) FILTER (WHERE s.ssl) AS tls"
            " FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
            " WHERE a.datname = current_database() AND a.backend_type = 'client backend'"
            " AND a.pid <> pg_backend_pid()"
        )
        assert row is not None
        return int(row["plain"]), int(row["tls"])
    finally:
        await conn.close()


async def _queue_for_replay(servers: Servers) -> str:
    async with await aio_pika.connect(servers.amqp_url()) as connection:
        queue = await (await connection.channel()).declare_queue(
            "replayed-here", arguments={"x-expires": 600_000}
        )
        return queue.name


async def _count(servers: Servers, queue: str) -> int:
    async with await aio_pika.connect(servers.amqp_url()) as connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


def test_the_worker_outplanctl_tail_and_replay_work_through_tls(
    servers: Servers, worker: subprocess.Popen[bytes]
) -> None:
    tls = {"amqp_url": servers.amqp_url(), "database_url": servers.database_url()}
    with subprocess.Popen(
        [*worker_command(), "tail", "--json"],
        env=env(**tls),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as tail:
        try:
            assert tail.stderr is not None and "tail: listening" in tail.stderr.readline()
            created = _run(
                [*_console("outplanctl"), "--customer-id", CUSTOMER, "create", "--name", "over TLS", *SOURCE],
                **tls,
            )
            assert created.returncode == 0, created.stderr
            outplan = json.loads(created.stdout)
            got = _run([*_console("outplanctl"), "--customer-id", CUSTOMER, "get", outplan["id"]], **tls)
            assert got.returncode == 0, got.stderr
            assert json.loads(got.stdout)["name"] == "over TLS"
            assert tail.stdout is not None
            event = json.loads(tail.stdout.readline())  # blocks until the relay published it
            assert (event["type"], event["subject"]) == ("outplan_created", outplan["id"])
        finally:
            tail.send_signal(signal.SIGINT)
            assert tail.wait(10) == 0
    plain, encrypted = asyncio.run(_connections_without_tls(servers))
    assert (plain, encrypted >= 2) == (0, True)  # the pool and the relay's own connection
    queue = asyncio.run(_queue_for_replay(servers))
    replayed = _run([*worker_command(), "replay", "--queue", queue, "--from-seq", "1"], **tls)
    assert replayed.returncode == 0, replayed.stderr
    assert asyncio.run(_count(servers, queue)) >= 1


WRONG = ["wrong CA", "wrong host name"]


def _wrong(servers: Servers, what: str, server: str) -> str:
    if server == "broker":
        return (
            servers.amqp_url(ca=servers.pki.other_ca)
            if what == "wrong CA"
            else servers.amqp_url(host="127.0.0.1")  # the certificate names localhost only
        )
    return (
        servers.database_url(ca=servers.pki.other_ca)
        if what == "wrong CA"
        else servers.database_url(host="127.0.0.1")
    )


def _one_refusal(stderr: str, server: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "certificate" in line]
    assert len(lines) == 1, stderr
    assert f"the {server}'s TLS certificate was refused" in lines[0]
    return lines[0]


@pytest.mark.parametrize("what", WRONG)
@pytest.mark.parametrize("server", ["broker", "database"])
def test_the_worker_refuses_a_certificate_it_cannot_verify_at_once(
    servers: Servers, what: str, server: str
) -> None:
    settings = {"amqp_url": servers.amqp_url(), "database_url": servers.database_url()}
    settings[f"{'amqp' if server == 'broker' else 'database'}_url"] = _wrong(servers, what, server)
    started = time.monotonic()
    done = _run([*worker_command(), "run"], **settings)
    assert done.returncode == 78, done.stderr
    assert time.monotonic() - started < 15
    line = json.loads(_one_refusal(done.stderr, server))
    assert line["level"] == "error"
    assert ("mismatch" in line["event"]) == (what == "wrong host name")
    assert not [entry for entry in done.stderr.splitlines() if "retrying" in entry]


@pytest.mark.parametrize("what", WRONG)
@pytest.mark.parametrize(
    ("tool", "server"),
    [("outplanctl", "broker"), ("tail", "broker"), ("replay", "database"), ("migrate", "database")],
)
def test_the_tools_refuse_a_certificate_they_cannot_verify(
    servers: Servers, what: str, tool: str, server: str
) -> None:
    settings = {"amqp_url": servers.amqp_url(), "database_url": servers.database_url()}
    settings[f"{'amqp' if server == 'broker' else 'database'}_url"] = _wrong(servers, what, server)
    argv = {
        "outplanctl": [*_console("outplanctl"), "--customer-id", CUSTOMER, "list"],
        "tail": [*worker_command(), "tail"],
        "replay": [*worker_command(), "replay", "--dry-run"],
        "migrate": [*worker_command(), "migrate"],
    }[tool]
    done = _run(argv, **settings)
    assert done.returncode == 78, done.stderr
    _one_refusal(done.stderr, server)
