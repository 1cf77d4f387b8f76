"""Starting the worker with settings or servers that cannot work: a clear line and an exit code."""

import asyncio
import os
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PG_ADMIN, database_url, drop_database
from tests.support.workers import WorkerProcess, start_worker, worker_command

pytestmark = pytest.mark.e2e


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPLAN_")}
    return {**env, **{f"OUTPLAN_{k.upper()}": v for k, v in settings.items()}}


@pytest.mark.parametrize("command", ["run", "migrate", "check"])
def test_invalid_settings_exit_2_with_one_line_per_setting(command: str) -> None:
    done = subprocess.run(
        [*worker_command(), command],
        env=_env(log_level="verbose", prefetch="0"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert len(lines) == 2, lines
    variables = [next(w for w in line.split() if w.startswith("OUTPLAN_")).rstrip(":") for line in lines]
    by_variable = dict(zip(variables, lines, strict=True))
    assert set(by_variable) == {"OUTPLAN_LOG_LEVEL", "OUTPLAN_PREFETCH"}
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in by_variable["OUTPLAN_LOG_LEVEL"]
    assert "greater than or equal to 1" in by_variable["OUTPLAN_PREFETCH"]


def test_a_log_level_in_any_case_is_accepted() -> None:
    # nothing answers on port 1: `check` exits 1 (not ready), not 2 (invalid settings)
    done = subprocess.run(
        [*worker_command(), "check"],
        env=_env(log_level="warning", metrics_port="1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1, done.stderr
    assert "invalid setting" not in done.stderr


# ---- a configuration that cannot work: one line saying what to do, exit 78 (EX_CONFIG) -----------

SECRET = f"s3cret-{uuid.uuid4().hex[:8]}"


def _fails_to_start(worker: WorkerProcess, seconds: float = 15) -> str:
    """The one error line of a worker that must exit 78 by itself within ``seconds``."""
    started = time.monotonic()
    try:
        code = worker.process.wait(seconds)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(f"still running after {seconds} s:\n{worker.log()}") from None
    log = worker.log()
    assert code == 78, log
    assert time.monotonic() - started < seconds
    assert "Traceback" not in log and '"worker started"' not in log, log
    errors = [e for e in worker.log_entries() if e.get("level") in ("error", "critical")]
    assert len(errors) == 1, log
    return str(errors[0]["event"])


def test_a_database_that_does_not_exist_exits_78_saying_to_migrate(tmp_path: Path) -> None:
    url = database_url(f"outplans_missing_{uuid.uuid4().hex[:8]}")
    line = _fails_to_start(start_worker(url, tmp_path, wait=False))
    assert "does not exist" in line and "run `outplan-worker migrate`" in line, line


def test_a_database_never_migrated_exits_78_saying_to_migrate(tmp_path: Path) -> None:
    url = database_url(f"outplans_empty_{uuid.uuid4().hex[:8]}")
    asyncio.run(_admin(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"'))
    try:
        line = _fails_to_start(start_worker(url, tmp_path, wait=False))
        assert "never migrated" in line and "run `outplan-worker migrate`" in line, line
    finally:
        drop_database(url)


def test_a_schema_older_or_newer_than_the_code_exits_78(tmp_path: Path, fresh_database: str) -> None:
    last = "SELECT version, name FROM schema_migrations ORDER BY version DESC LIMIT 1"
    asyncio.run(
        _execute(
            fresh_database,
            f"CREATE TABLE kept AS {last}; DELETE FROM schema_migrations"
            " WHERE version = (SELECT version FROM kept)",
        )
    )
    line = _fails_to_start(start_worker(fresh_database, tmp_path, wait=False))
    assert "older than this code" in line and "run `outplan-worker migrate`" in line, line

    asyncio.run(
        _execute(
            fresh_database,
            "INSERT INTO schema_migrations (version, name) SELECT * FROM kept;"
            " INSERT INTO schema_migrations (version, name)"
            " VALUES (9999, '9999_from_the_future.sql')",
        )
    )
    line = _fails_to_start(start_worker(fresh_database, tmp_path, wait=False))
    assert "newer than this code" in line and "9999_from_the_future.sql" in line, line


def test_a_login_postgresql_refuses_exits_78_for_run_and_migrate(tmp_path: Path) -> None:
    url = f"postgresql://nobody_{uuid.uuid4().hex[:8]}:{SECRET}@127.0.0.1:5432/outplans"
    line = _fails_to_start(start_worker(url, tmp_path, wait=False))
    assert "PostgreSQL refused the login" in line and "OUTPLAN_DATABASE_URL" in line, line
    migrated = subprocess.run(
        [*worker_command(), "migrate"], env=_env(database_url=url), capture_output=True, text=True, timeout=30
    )
    assert migrated.returncode == 78, migrated.stderr
    assert "Traceback" not in migrated.stderr and SECRET not in migrated.stderr
    assert "PostgreSQL refused the login" in migrated.stderr


def test_a_wrong_broker_password_exits_78(tmp_path: Path, session_database: str) -> None:
    worker = start_worker(
        session_database, tmp_path, wait=False, amqp_url=f"amqp://guest:{SECRET}@127.0.0.1:5672/"
    )
    line = _fails_to_start(worker)
    assert "RabbitMQ refused the login" in line and "OUTPLAN_AMQP_URL" in line, line
    assert SECRET not in worker.log()


def test_a_broker_not_listening_yet_is_retried_until_stopped(tmp_path: Path, session_database: str) -> None:
    worker = start_worker(session_database, tmp_path, wait=False, amqp_url="amqp://guest:guest@127.0.0.1:1/")
    time.sleep(3)
    assert worker.process.poll() is None, worker.log()
    retries = worker.log_events("broker unreachable; retrying")
    assert len(retries) >= 2, worker.log()
    assert worker.stop(timeout=15) == 0
    assert worker.log_events("stopped before the worker could start")


async def _execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _admin(statement: str) -> None:
    await _execute(PG_ADMIN, statement)
