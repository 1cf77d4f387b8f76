"""Starting the worker with settings or servers that cannot work: a clear line and an exit code."""

import os
import subprocess

import pytest

from tests.support.workers import worker_command

pytestmark = pytest.mark.e2e


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPLAN_")}
    return {**env, **{f"OUTPLAN_{k.upper()}": v for k, v in settings.items()}}


@pytest.mark.parametrize("command", ["run", "migrate", "check"])
def test_invalid_settings_exit_2_with_one_line_per_setting(command: str) -> None:
    done = subprocess.run([*worker_command(), command], env=_env(log_level="verbose", prefetch="0"),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert len(lines) == 2, lines
    by_variable = {next(w for w in line.split() if w.startswith("OUTPLAN_")).rstrip(":"): line for line in lines}
    assert set(by_variable) == {"OUTPLAN_LOG_LEVEL", "OUTPLAN_PREFETCH"}
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in by_variable["OUTPLAN_LOG_LEVEL"]
    assert "greater than or equal to 1" in by_variable["OUTPLAN_PREFETCH"]


def test_a_log_level_in_any_case_is_accepted() -> None:
    # nothing answers on port 1: `check` exits 1 (not ready), not 2 (invalid settings)
    done = subprocess.run([*worker_command(), "check"], env=_env(log_level="warning", metrics_port="1"),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    assert "invalid setting" not in done.stderr
