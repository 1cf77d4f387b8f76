"""Servers of the cluster suite's own: three RabbitMQ nodes in one cluster, and a PostgreSQL primary
with a synchronous streaming standby, all on this machine beside (never instead of) its services.

Each server gets its own ports (RabbitMQ AMQP 5701-5703 and Erlang distribution 25701-25703;
PostgreSQL 5461-5462), node name, data and log folders under one temporary folder, and is
stopped by the process id it wrote (never by a name). The machine's RabbitMQ node
(``rabbit@localhost``, 5672) and PostgreSQL (5432) are not touched; epmd, the Erlang port mapper
the machine's node started, is shared (every node on a host registers with it).

Run as root, the servers drop to the ``rabbitmq`` and ``postgres`` users the Debian packages
created (PostgreSQL refuses to run as root; RabbitMQ's folders belong to its user); run as anyone
else, they run as that user.
"""

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.servers import RABBIT_BIN, ServerFailed, own, pg_bin, port_taken, run_as, tail

AMQP_PORT_BASE = 5700  # node i listens on AMQP_PORT_BASE + i
DIST_PORT_BASE = 25700  # and on DIST_PORT_BASE + i for Erlang distribution
PG_PRIMARY_PORT = 5461
PG_STANDBY_PORT = 5462
STANDBY_NAME = "standby1"  # its cluster_name, hence its application_name on the primary


async def _run(
    argv: list[str],
    *,
    user: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> str:
    """Run a command as ``user`` (see ``run_as``) and return its stdout; raises ``ServerFailed`` with
    its output when it fails or outlasts ``timeout`` (s)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=cwd,
        **run_as(user),
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ServerFailed(f"{' '.join(argv)}: no answer within {timeout} s") from None
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise ServerFailed(f"{' '.join(argv)} exited {process.returncode}:\n{text[-3000:]}")
    return text


def _kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_gone(pid: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


# ---- RabbitMQ ---------------------------------------------------------------------------------


@dataclass
class RabbitNode:
    """One RabbitMQ node: ``outplan-c<index>@localhost`` on 127.0.0.1:570<index>."""

    index: int
    base: Path  # this node's folder: config, data, logs, pid file
    home: Path  # HOME of the node and of the CLI: holds the cluster's .erlang.cookie
    process: "subprocess.Popen[bytes] | None" = None
    pid: int | None = None  # the Erlang VM's (beam.smp) process id, from its pid file

    @property
    def name(self) -> str:
        return f"outplan-c{self.index}@localhost"

    @property
    def port(self) -> int:
        return AMQP_PORT_BASE + self.index

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        b = self.base
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.name,
            # The machine's rabbitmq.conf pins its listener to 5672, and its rabbitmq-env.conf names
            # its node: this node reads files of its own instead.
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(b / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_DIST_PORT": str(DIST_PORT_BASE + self.index),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def prepare(self) -> None:
        for folder in ("mnesia", "log"):
            (self.base / folder).mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        (self.base / "enabled_plugins").write_text("[].\n")  # no management plugin: nothing else listens
        own(self.base, "rabbitmq")

    def start(self) -> None:
        """Start the node (returns at once; ``wait_started`` waits for it)."""
        (self.base / "pid").unlink(missing_ok=True)
        with (self.base / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(RABBIT_BIN / "rabbitmq-server")],
                env=self.env(),
                cwd=self.base,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **run_as("rabbitmq"),
            )
        self.pid = None

    async def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        """``rabbitmqctl -n <this node> args`` (or another CLI tool); its output."""
        return await _run(
            [str(RABBIT_BIN / tool), "-n", self.name, *args],
            user="rabbitmq",
            env=self.env(),
            cwd=self.base,
            timeout=timeout,
        )

    async def wait_started(self, seconds: float = 90) -> None:
        """Until the node has booted (``await_startup``); reads the VM's process id."""
        deadline = time.monotonic() + seconds
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise ServerFailed(f"{self.name} exited:\n{tail(self.base / 'server.log')}")
            try:
                await self.ctl("await_startup", "--timeout", "10", timeout=20)
                break
            except ServerFailed:
                if time.monotonic() > deadline:
                    raise ServerFailed(
                        f"{self.name} did not start in {seconds} s:\n{tail(self.base / 'server.log')}"
                    ) from None
                await asyncio.sleep(0.5)
        self.pid = int((self.base / "pid").read_text().split()[0])

    def kill(self) -> None:
        """SIGKILL the node's VM (no goodbye to the cluster or the clients), and reap its starter."""
        if self.pid is not None:
            _kill_pid(self.pid)
            _wait_gone(self.pid)
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # the starter script, if it still runs
            self.process.wait(10)
        self.pid = None
        self.process = None


@dataclass
class RabbitCluster:
    """Three nodes joined with ``rabbitmqctl join_cluster``; quorum queues get a member on each
    (RabbitMQ's default initial group size, ``quorum_cluster_size``, is 3)."""

    base: Path
    nodes: list[RabbitNode] = field(default_factory=list)

    @classmethod
    def create(cls, base: Path, size: int = 3) -> "RabbitCluster":
        home = base / "home"
        home.mkdir(parents=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))  # nodes of one cluster share it
        cookie.chmod(0o400)
        own(home, "rabbitmq")
        nodes = [RabbitNode(i, base / f"node{i}", home) for i in range(1, size + 1)]
        return cls(base, nodes)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node_on_port(self, port: int) -> RabbitNode:
        return next(node for node in self.nodes if node.port == port)

    async def start(self) -> None:
        """Start every node, join the others to the first, and check all three run."""
        if not (RABBIT_BIN / "rabbitmq-server").exists():
            raise ServerFailed(f"no {RABBIT_BIN / 'rabbitmq-server'}: install rabbitmq-server")
        taken = [n.port for n in self.nodes if port_taken(n.port)]
        taken += [DIST_PORT_BASE + n.index for n in self.nodes if port_taken(DIST_PORT_BASE + n.index)]
        if taken:
            raise ServerFailed(f"ports already in use: {taken} (another cluster run still going?)")
        for node in self.nodes:
            node.prepare()
            node.start()
        await asyncio.gather(*(node.wait_started() for node in self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            await node.ctl("stop_app")
            await node.ctl("join_cluster", first.name)
            await node.ctl("start_app")
        await self.wait_whole()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def up(self) -> list[RabbitNode]:
        return [node for node in self.nodes if node.pid is not None]

    async def running_nodes(self) -> set[str]:
        status = json.loads(await self.up()[0].ctl("cluster_status", "--formatter", "json"))
        return set(status["running_nodes"])

    async def wait_whole(self, queue: str | None = None, seconds: float = 90) -> float:
        """Until every node runs in the cluster (and, given ``queue``, every member of that quorum
        queue is a leader or a follower again); returns the seconds it took."""
        start = time.monotonic()
        want = {node.name for node in self.nodes}
        while True:
            with contextlib.suppress(ServerFailed, ValueError, KeyError):
                if await self.running_nodes() == want and (
                    queue is None or await self.members_in_service(queue) == want
                ):
                    return time.monotonic() - start
            if time.monotonic() - start > seconds:
                raise ServerFailed(f"the cluster was not whole again within {seconds} s")
            await asyncio.sleep(0.5)

    async def members_in_service(self, queue: str) -> set[str]:
        """The nodes whose member of quorum queue ``queue`` is a leader or a follower."""
        out = await self.up()[0].ctl("quorum_status", queue, "--formatter", "json", tool="rabbitmq-queues")
        rows = json.loads(out)
        return {row["Node Name"] for row in rows if row.get("Raft State") in ("leader", "follower")}

    async def leader_of(self, queue: str) -> RabbitNode:
        """The node that leads quorum queue ``queue`` now."""
        out = await self.up()[0].ctl("list_queues", "name", "leader", "--formatter", "json")
        for row in json.loads(out):
            if row["name"] == queue:
                return next(node for node in self.nodes if node.name == row["leader"])
        raise ServerFailed(f"no queue {queue!r} in the cluster")


# ---- PostgreSQL ---------------------------------------------------------------------------------


@dataclass
class PgServer:
    """One PostgreSQL server on 127.0.0.1:``port``, data in ``data``, its socket in ``base``."""

    base: Path
    port: int

    @property
    def data(self) -> Path:
        return self.base / f"data{self.port}"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def pg(self, tool: str, *args: str, timeout: float = 120) -> str:
        return await _run([str(pg_bin() / tool), *args], user="postgres", cwd=self.base, timeout=timeout)

    async def start(self) -> None:
        await self.pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.base / f"pg{self.port}.log"), "-w", "start"
        )

    async def stop_immediately(self) -> None:
        """``pg_ctl stop -m immediate``: no checkpoint, clients cut off, as if the machine died."""
        await self.pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    async def execute(self, sql: str) -> str:
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            return await conn.execute(sql)
        finally:
            await conn.close()

    async def fetchval(self, sql: str) -> Any:
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    def stop_quietly(self) -> None:
        """At the end of a test, whatever state it is in: ``pg_ctl stop -m immediate``, errors ignored."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(pg_bin() / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                check=False,
                cwd=self.base,
                timeout=60,
                **run_as("postgres"),
            )


@dataclass
class PgPair:
    """A primary (5461) and a synchronous streaming standby (5462) made from it with ``pg_basebackup -R``.

    The primary commits only once the standby has the commit's WAL on disk
    (``synchronous_standby_names`` names the standby, ``synchronous_commit = on``), so a commit
    the worker saw succeed survives the primary's loss. The standby inherits the primary's
    configuration (the base backup copies it), ``synchronous_standby_names`` included.
    """

    base: Path
    primary: PgServer
    standby: PgServer

    @classmethod
    def create(cls, base: Path) -> "PgPair":
        return cls(base, PgServer(base, PG_PRIMARY_PORT), PgServer(base, PG_STANDBY_PORT))

    def url(self, database: str) -> str:
        """The multi-host URL the worker is given: asyncpg keeps the first host that takes writes."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    async def start(self) -> None:
        taken = [p for p in (self.primary.port, self.standby.port) if port_taken(p)]
        if taken:
            raise ServerFailed(f"ports already in use: {taken} (another cluster run still going?)")
        own(self.base, "postgres")
        p, s = self.primary, self.standby
        await p.pg("initdb", "-D", str(p.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with (p.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {p.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\n"
                "wal_level = replica\n"
                "max_wal_senders = 5\n"
                "hot_standby = on\n"
                "synchronous_commit = on\n"
                f"synchronous_standby_names = '{STANDBY_NAME}'\n"
                "shared_buffers = 32MB\n"
                "max_connections = 60\n"
            )
        with (p.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        await p.start()
        await s.pg(
            "pg_basebackup", "-D", str(s.data), "-h", "127.0.0.1", "-p", str(p.port), "-U", "postgres",
            "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        with (s.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {s.port}\ncluster_name = '{STANDBY_NAME}'\n")
        await s.start()
        deadline = time.monotonic() + 30
        while (
            await p.fetchval(
                f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'"
            )
            != "sync"
        ):
            if time.monotonic() > deadline:
                raise ServerFailed("the standby did not become synchronous within 30 s")
            await asyncio.sleep(0.2)

    async def fail_over(self) -> None:
        """The primary dies (``-m immediate``); the standby stops waiting for a standby of its own
        (the ``synchronous_standby_names`` it inherited, or its commits would hang) and is promoted."""
        await self.primary.stop_immediately()
        await self.standby.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
        await self.standby.execute("SELECT pg_reload_conf()")
        await self.standby.pg("pg_ctl", "-D", str(self.standby.data), "-w", "promote")

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            server.stop_quietly()


def remove(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)
