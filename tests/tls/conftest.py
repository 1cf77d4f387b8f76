"""The TLS suite's servers and certificates, once per session; removed at the end."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import RABBIT_BIN
from tests.support.workers import worker_command
from tests.tls import pki as certificates
from tests.tls.servers import PostgresTls, RabbitTls

DATABASE = "outplans_tls"


@dataclass
class Servers:
    """Everything a test needs: the certificates, the servers, and a migrated database."""

    pki: certificates.Pki
    rabbit: RabbitTls
    postgres: PostgresTls

    def amqp_url(self, **kwargs: object) -> str:
        return self.rabbit.url(self.pki, **kwargs)  # type: ignore[arg-type]

    def database_url(self, **kwargs: object) -> str:
        return self.postgres.url(self.pki, DATABASE, **kwargs)  # type: ignore[arg-type]


def env(**settings: str) -> dict[str, str]:
    """This process's environment without its ``OUTPLAN_*`` variables, and ``settings`` as such."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("OUTPLAN_")}
    return {**kept, "OUTPLAN_METRICS_PORT": "0", **{f"OUTPLAN_{k.upper()}": v for k, v in settings.items()}}


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    if os.geteuid() != 0:
        pytest.skip("the TLS suite starts servers as the rabbitmq and postgres users: run it as root")
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        pytest.skip(f"no {RABBIT_BIN / 'rabbitmq-server'}")
    # Not pytest's tmp_path: that is root's alone, and the servers run as their own users.
    base = Path(tempfile.mkdtemp(prefix="outplan-tls-"))
    base.chmod(0o755)
    (base / "client").mkdir()
    pki = certificates.make(base / "client")
    for path in (base / "client").iterdir():
        path.chmod(0o644)
    rabbit, postgres = RabbitTls(base / "rabbit"), PostgresTls(base / "postgres")
    try:
        postgres.start(pki)
        rabbit.start(pki)
        found = Servers(pki, rabbit, postgres)
        migrated = subprocess.run(
            [*worker_command(), "migrate"],
            env=env(database_url=found.database_url()),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrated.returncode == 0, migrated.stderr
        yield found
    finally:
        rabbit.stop()
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)
