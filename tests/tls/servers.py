"""The TLS suite's own servers, beside (never instead of) the machine's: a RabbitMQ node whose
only AMQP listener is AMQPS on 127.0.0.1:5771 (Erlang distribution on 25771), which requires a
client certificate, with the management API on 127.0.0.1:5770, and a PostgreSQL cluster on
127.0.0.1:5481 with ``ssl = on``.

The PostgreSQL cluster also accepts clients without TLS (``host`` beside ``hostssl`` in
pg_hba.conf): a client that fell back to plaintext would get in, so a refused certificate
proves that the client does not downgrade. Each server runs as the user its Debian package
created (``rabbitmq``, ``postgres``; the suite runs as root) and is stopped by the process id it
wrote. RabbitMQ's TLS options: "TLS Support" (https://www.rabbitmq.com/docs/ssl); PostgreSQL's:
"Secure TCP/IP Connections with SSL" (server configuration, ``ssl``, ``ssl_cert_file``).
"""

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import RABBIT_BIN, ServerFailed, own, pg_bin, port_taken, run_as, tail
from tests.tls.pki import Pki

AMQPS_PORT = 5771
MANAGEMENT_PORT = 5770  # the management plugin's HTTP API (plain HTTP, on 127.0.0.1 only)
DIST_PORT = 25771
NODE_NAME = "outplan-tls@localhost"
PG_PORT = 5481


def _copy_keys(pki: Pki, folder: Path) -> tuple[Path, Path, Path]:
    """The CA, the server certificate and its key, copied into a server's own folder."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = tuple(Path(shutil.copy(source, folder)) for source in (pki.ca, pki.server_cert, pki.server_key))
    copies[2].chmod(0o600)  # PostgreSQL refuses a key others may read
    return copies  # type: ignore[return-value]


@dataclass
class RabbitTls:
    """The RabbitMQ node; ``url(pki)`` is the ``amqps://`` URL that reaches it."""

    base: Path
    process: "subprocess.Popen[bytes] | None" = None

    def env(self) -> dict[str, str]:
        b = self.base
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(b / "home"),  # its own .erlang.cookie
            "RABBITMQ_NODENAME": NODE_NAME,
            # The machine's rabbitmq.conf pins its listener to 5672 and its rabbitmq-env.conf names its
            # node: this node reads files of its own.
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(b / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_DIST_PORT": str(DIST_PORT),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self, pki: Pki, seconds: float = 90) -> None:
        for port in (AMQPS_PORT, DIST_PORT, MANAGEMENT_PORT):
            if port_taken(port):
                raise ServerFailed(f"port {port} already in use (another TLS suite still running?)")
        b = self.base
        for folder in ("mnesia", "log", "home"):
            (b / folder).mkdir(parents=True, exist_ok=True)
        cookie = b / "home" / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        ca, cert, key = _copy_keys(pki, b / "tls")
        (b / "rabbitmq.conf").write_text(
            "listeners.tcp = none\n"
            f"listeners.ssl.default = 127.0.0.1:{AMQPS_PORT}\n"
            f"ssl_options.cacertfile = {ca}\n"
            f"ssl_options.certfile = {cert}\n"
            f"ssl_options.keyfile = {key}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
            f"management.tcp.port = {MANAGEMENT_PORT}\n"
            "management.tcp.ip = 127.0.0.1\n"
        )
        (b / "rabbitmq-env.conf").write_text("")
        # The management API: the worker compares the topology through it (OUTPLAN_MANAGEMENT_URL).
        (b / "enabled_plugins").write_text("[rabbitmq_management].\n")
        own(b, "rabbitmq")
        with (b / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(RABBIT_BIN / "rabbitmq-server")],
                env=self.env(),
                cwd=b,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **run_as("rabbitmq"),
            )
        deadline = time.monotonic() + seconds
        while not self._started():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"the TLS RabbitMQ node did not start:\n{tail(b / 'server.log')}")
            time.sleep(0.5)

    def _started(self) -> bool:
        done = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", NODE_NAME, "await_startup", "--timeout", "10"],
            env=self.env(),
            cwd=self.base,
            capture_output=True,
            timeout=30,
            check=False,
            **run_as("rabbitmq"),
        )
        return done.returncode == 0

    def url(self, pki: Pki, *, host: str = "localhost", ca: Path | None = None) -> str:
        """``amqps://`` with the CA to verify the node by and the client certificate it requires
        (aiormq's query parameters ``cafile``, ``certfile``, ``keyfile``)."""
        return (
            f"amqps://guest:guest@{host}:{AMQPS_PORT}/?cafile={ca or pki.ca}"
            f"&certfile={pki.client_cert}&keyfile={pki.client_key}"
        )

    def stop(self) -> None:
        """Kill the node's VM (its pid file) and the starter this suite started."""
        pid_file = self.base / "pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None


@dataclass
class PostgresTls:
    """The PostgreSQL cluster; ``url(pki, database)`` reaches it with ``sslmode=verify-full``."""

    base: Path

    @property
    def data(self) -> Path:
        return self.base / "data"

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [str(pg_bin() / tool), *args],
            cwd=self.base,
            capture_output=True,
            timeout=120,
            check=False,
            **run_as("postgres"),
        )
        if done.returncode != 0:
            raise ServerFailed(
                f"{tool} exited {done.returncode}:\n{(done.stdout + done.stderr).decode()[-3000:]}"
            )

    def start(self, pki: Pki) -> None:
        if port_taken(PG_PORT):
            raise ServerFailed(f"port {PG_PORT} already in use (another TLS suite still running?)")
        self.base.mkdir(parents=True, exist_ok=True)
        ca, cert, key = _copy_keys(pki, self.base / "tls")
        own(self.base, "postgres")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {PG_PORT}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\n"
                "ssl = on\n"
                f"ssl_cert_file = '{cert}'\n"
                f"ssl_key_file = '{key}'\n"
                f"ssl_ca_file = '{ca}'\n"
                "shared_buffers = 16MB\n"
                "max_connections = 40\n"
            )
        # Plaintext is let in too: a client that downgraded would connect, so a refusal proves it did not.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 trust\n"
        )
        own(self.data, "postgres")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.base / "pg.log"), "-w", "start")

    def url(self, pki: Pki, database: str, *, host: str = "localhost", ca: Path | None = None) -> str:
        return (
            f"postgresql://postgres@{host}:{PG_PORT}/{database}"
            f"?sslmode=verify-full&sslrootcert={ca or pki.ca}"
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
