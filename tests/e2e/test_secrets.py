"""Credentials never reach the logs, also when connecting fails; a stop during start-up is prompt."""

import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import database_url
from tests.support.workers import WorkerNames, start_worker, worker_command

pytestmark = pytest.mark.e2e

SECRET = f"s3cret-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    ("setting", "value", "waiting_for"),
    [
        ("amqp_url", f"amqp://guest:{SECRET}@127.0.0.1:1/", "broker"),  # nothing listens on port 1
        ("database_url", f"postgresql://postgres:{SECRET}@127.0.0.1:1/outplans", "database"),
    ],
)
def test_connection_failures_never_log_credentials(
    tmp_path: Path, session_database: str, setting: str, value: str, waiting_for: str
) -> None:
    settings = {"database_url": session_database, setting: value}
    url = settings.pop("database_url")
    worker = start_worker(url, tmp_path, WorkerNames.fresh(), wait=False, launcher=worker_command, **settings)
    time.sleep(3)  # several failed attempts
    started = time.monotonic()
    assert worker.stop(timeout=15) == 0
    assert time.monotonic() - started < 5
    log = worker.log()
    assert f"{waiting_for} unreachable; retrying" in log
    assert "stopped before the worker could start" in log
    assert SECRET not in log


def test_a_password_in_the_database_url_stays_out_of_the_logs(tmp_path: Path, session_database: str) -> None:
    # trust authentication accepts any password, so the worker runs normally with one in its URL
    url = database_url(session_database.rsplit("/", 1)[1]).replace("postgres@", f"postgres:{SECRET}@")
    worker = start_worker(url, tmp_path, WorkerNames.fresh())
    assert worker.stop() == 0
    log = worker.log()
    assert '"worker started"' in log and SECRET not in log
