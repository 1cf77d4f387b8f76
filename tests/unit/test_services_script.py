"""scripts/services decides from what the machine has: nothing to do, start, install, or ask for root.

The server commands, apt-get and id are stubs on PATH that read and write flag files in a state
directory; port probes answer from the same flags. Nothing is installed, started or probed on
the machine running the tests.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "services"
TOOLS = ("bash", "env", "awk", "sed", "grep", "seq", "sleep", "cat", "cp", "touch", "timeout", "rm")

# Debian 12's pg_hba.conf as the postgresql package writes it (comments shortened).
DEBIAN_PG_HBA = """\
# PostgreSQL Client Authentication Configuration File
# ===================================================

# DO NOT DISABLE!
# Database administrative login by Unix domain socket
local   all             postgres                                peer

# TYPE  DATABASE        USER            ADDRESS                 METHOD

# "local" is for Unix domain socket connections only
local   all             all                                     peer
# IPv4 local connections:
host    all             all             127.0.0.1/32            scram-sha-256
# IPv6 local connections:
host    all             all             ::1/128                 scram-sha-256
"""

# Each stub appends "name args" to $STATE/calls, then acts on the flags in $STATE.
STUBS = {
    "id": 'echo "$STUB_UID"',
    "pg_isready": '[ -e "$STATE/pg-running" ]',
    "pg_lsclusters": (
        'status=down; [ -e "$STATE/pg-running" ] && status=online\n'
        'echo "15 main 5432 $status postgres /var/lib/postgresql/15/main /var/log/postgresql/15-main.log"'
    ),
    "pg_conftool": 'echo "$STATE/pg_hba.conf"',
    "pg_ctlcluster": 'case " $* " in *" start "*) touch "$STATE/pg-running" ;; esac',
    "rabbitmq-server": 'case " $* " in *" -detached "*) touch "$STATE/mq-running" ;; esac',
    "rabbitmqctl": (
        'case " $* " in *" stop "*) rm -f "$STATE/mq-running" "$STATE/mq-wedged" ;;'
        ' *) [ -e "$STATE/mq-running" ] ;; esac'
    ),
    # installing a package puts its commands on PATH (and, for postgresql, a cluster's pg_hba.conf)
    "apt-get": """
case $1 in install)
  for arg; do
    [ -d "$PKGS/$arg" ] && cp "$PKGS/$arg"/* "$BIN/"
    [ "$arg" = postgresql ] && cp "$PKGS/pg_hba.conf" "$STATE/pg_hba.conf"
  done ;;
esac
true""",
    "sudo": "exit 1",
}
PACKAGES = {
    "postgresql": ("pg_isready", "pg_lsclusters", "pg_conftool", "pg_ctlcluster"),
    "rabbitmq-server": ("rabbitmq-server", "rabbitmqctl"),
}
PROBES = {"id", "pg_isready", "pg_lsclusters", "rabbitmqctl"}
# the ports answer when the stubbed server is running
PORTS = (
    "port_open() { case $1 in"
    ' 5432) [ -e "$STATE/pg-running" ] ;;'
    ' 5672) [ -e "$STATE/mq-running" ] ;;'
    " *) false ;; esac; }\n"
    # a wedged broker listens but never answers the protocol header
    'amqp_answers() { [ -e "$STATE/mq-running" ] && [ ! -e "$STATE/mq-wedged" ]; }'
)


def run_services(
    tmp_path: Path,
    *,
    pg: str,
    mq: str,
    root: bool = True,
    apt: bool = True,
    pg_client: bool = True,
    dry_run: bool = True,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the script against a machine where PostgreSQL and RabbitMQ are each
    "missing", "stopped" or "running" (RabbitMQ also "wedged": listening, not answering AMQP);
    return the result and the stub calls."""
    state, bin_dir, pkgs = tmp_path / "state", tmp_path / "bin", tmp_path / "pkgs"
    for d in (state, bin_dir, pkgs):
        d.mkdir()
    for name in TOOLS:
        found = shutil.which(name)
        assert found, name
        (bin_dir / name).symlink_to(found)

    def stub(name: str, where: Path) -> None:
        path = where / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$STATE/calls"\n{STUBS[name]}\n')
        path.chmod(0o755)

    for name in ("id", "sudo") + (("apt-get",) if apt else ()):
        stub(name, bin_dir)
    for package, commands in PACKAGES.items():
        (pkgs / package).mkdir()
        for name in commands:
            stub(name, pkgs / package)
    (pkgs / "pg_hba.conf").write_text(DEBIAN_PG_HBA)

    def install(package: str) -> None:
        for name in PACKAGES[package]:
            shutil.copy2(pkgs / package / name, bin_dir / name)

    if pg != "missing":
        install("postgresql")
        (state / "pg_hba.conf").write_text(DEBIAN_PG_HBA)
    if mq != "missing":
        install("rabbitmq-server")
    if pg == "running":
        (state / "pg-running").touch()
        if not pg_client:  # e.g. a server in a container, and no client tools here
            for name in PACKAGES["postgresql"]:
                (bin_dir / name).unlink()
    if mq in ("running", "wedged"):
        (state / "mq-running").touch()
    if mq == "wedged":
        (state / "mq-wedged").touch()

    env = {
        "PATH": str(bin_dir),
        "STATE": str(state),
        "BIN": str(bin_dir),
        "PKGS": str(pkgs),
        "STUB_UID": "0" if root else "1000",
        "OUTPLAN_SERVICES_WAIT_SECONDS": "3",
    }
    if dry_run:
        env["OUTPLAN_SERVICES_DRY_RUN"] = "1"
    result = run_harness(tmp_path, env, "main")
    calls_file = state / "calls"
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    return result, calls


def run_harness(tmp_path: Path, env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    """Source the script (which then runs nothing by itself), fake the port probes, run `command`."""
    return subprocess.run(
        [str(tmp_path / "bin" / "bash"), "-c", f"source {SCRIPT}\n{PORTS}\n{command}\n", "scripts/services"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def plan_of(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith("plan: ")]
    assert lines, result.stdout + result.stderr
    return lines[0].removeprefix("plan: ")


def plan(*steps: str) -> str:
    """A plan as a dry run prints it: its steps joined with ';'."""
    return ";".join(steps)


INSTALL_BOTH, INSTALL_PG, INSTALL_MQ = (
    "install postgresql rabbitmq-server",
    "install postgresql",
    "install rabbitmq-server",
)
START_PG, START_MQ, WAIT = "start-postgresql", "start-rabbitmq", "wait"
RESTART_MQ = "restart-rabbitmq"
SET_UP_PG = ("trust-local-postgres", START_PG)  # once PostgreSQL is installed


@pytest.mark.parametrize(
    ("pg", "mq", "root", "apt", "expected"),
    [
        # PostgreSQL, RabbitMQ, root, apt-get: the plan
        ("running", "running", True, True, "up"),
        ("running", "running", False, False, "up"),
        ("stopped", "stopped", True, True, plan(START_PG, START_MQ, WAIT)),
        ("running", "stopped", True, True, plan(START_MQ, WAIT)),
        ("stopped", "running", True, False, plan(START_PG, WAIT)),
        ("missing", "missing", True, True, plan(INSTALL_BOTH, *SET_UP_PG, START_MQ, WAIT)),
        ("running", "missing", True, True, plan(INSTALL_MQ, START_MQ, WAIT)),
        ("missing", "running", True, True, plan(INSTALL_PG, *SET_UP_PG, WAIT)),
        ("missing", "stopped", True, True, plan(INSTALL_PG, *SET_UP_PG, START_MQ, WAIT)),
        ("missing", "missing", False, True, "need-root"),
        ("stopped", "running", False, True, "need-root"),
        ("stopped", "stopped", False, False, "need-root"),
        ("missing", "missing", True, False, "no-package-manager postgresql rabbitmq-server"),
        ("running", "missing", False, False, "no-package-manager rabbitmq-server"),
        ("running", "wedged", True, True, plan(RESTART_MQ, WAIT)),
        ("stopped", "wedged", True, False, plan(START_PG, RESTART_MQ, WAIT)),
        ("running", "wedged", False, True, "need-root"),
    ],
)
def test_the_plan_follows_from_what_is_installed_running_and_allowed(
    tmp_path: Path, pg: str, mq: str, root: bool, apt: bool, expected: str
) -> None:
    result, calls = run_services(tmp_path, pg=pg, mq=mq, root=root, apt=apt)
    assert plan_of(result) == expected
    # a dry run only looks
    assert {call.split()[0] for call in calls} <= PROBES, calls
    assert result.returncode == (1 if expected.startswith(("need-root", "no-package-manager")) else 0)


def test_a_server_answering_on_its_port_without_local_client_tools_counts_as_up(tmp_path: Path) -> None:
    # e.g. PostgreSQL in a container: nothing to install although pg_isready is not here
    result, _ = run_services(tmp_path, pg="running", mq="running", pg_client=False)
    assert plan_of(result) == "up"


def test_up_already_is_reported_at_once(tmp_path: Path) -> None:
    result, calls = run_services(tmp_path, pg="running", mq="running", dry_run=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "PostgreSQL and RabbitMQ are up\n"
    assert {call.split()[0] for call in calls} <= PROBES


def test_installed_but_stopped_as_root_starts_both_and_waits(tmp_path: Path) -> None:
    result, calls = run_services(tmp_path, pg="stopped", mq="stopped", dry_run=False)
    assert result.returncode == 0, result.stderr
    assert "pg_ctlcluster --skip-systemctl-redirect 15 main start" in calls
    assert "rabbitmq-server -detached" in calls
    assert not any(call.startswith("apt-get") for call in calls)
    assert result.stdout.splitlines()[-1] == "PostgreSQL and RabbitMQ are up"


def test_a_wedged_broker_is_stopped_and_started_again_as_root(tmp_path: Path) -> None:
    result, calls = run_services(tmp_path, pg="running", mq="wedged", dry_run=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "does not answer AMQP: restarting it" in result.stdout
    assert calls.index("rabbitmqctl stop") < calls.index("rabbitmq-server -detached")
    assert result.stdout.splitlines()[-1] == "PostgreSQL and RabbitMQ are up"


def test_a_wedged_broker_without_root_is_named_as_such(tmp_path: Path) -> None:
    result, calls = run_services(tmp_path, pg="running", mq="wedged", root=False, dry_run=False)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "PostgreSQL is up and RabbitMQ accepts connections but does not answer AMQP; installing and"
    )
    assert {call.split()[0] for call in calls} <= PROBES


def test_missing_as_root_installs_from_apt_lets_postgres_in_over_tcp_and_starts_both(tmp_path: Path) -> None:
    result, calls = run_services(tmp_path, pg="missing", mq="missing", dry_run=False)
    assert result.returncode == 0, result.stdout + result.stderr
    apt_calls = [call for call in calls if call.startswith("apt-get")]
    assert apt_calls == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends postgresql rabbitmq-server",
    ]
    assert "pg_ctlcluster --skip-systemctl-redirect 15 main start" in calls
    assert "rabbitmq-server -detached" in calls
    assert result.stdout.splitlines()[-1] == "PostgreSQL and RabbitMQ are up"

    rules = [
        line.split()
        for line in (tmp_path / "state" / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    # first match wins: the trust lines come before the package's peer and password rules
    assert rules[:3] == [
        ["host", "all", "postgres", "127.0.0.1/32", "trust"],
        ["host", "all", "postgres", "::1/128", "trust"],
        ["local", "all", "postgres", "peer"],
    ]
    assert len(rules) == 6


def test_the_trust_lines_are_added_once(tmp_path: Path) -> None:
    run_services(tmp_path, pg="missing", mq="running", dry_run=False)
    hba = tmp_path / "state" / "pg_hba.conf"
    once = hba.read_text()
    env = {"PATH": str(tmp_path / "bin"), "STATE": str(tmp_path / "state"), "STUB_UID": "0"}
    assert run_harness(tmp_path, env, "trust_local_postgres").returncode == 0
    assert hba.read_text() == once


def test_without_root_it_names_the_one_command_to_run_and_changes_nothing(tmp_path: Path) -> None:
    result, calls = run_services(tmp_path, pg="missing", mq="stopped", root=False, dry_run=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "PostgreSQL is not installed and RabbitMQ is not running; installing and starting them"
        " needs root. Run: sudo bash scripts/services"
    )
    assert {call.split()[0] for call in calls} <= PROBES


def test_without_apt_it_says_what_to_install(tmp_path: Path) -> None:
    result, calls = run_services(tmp_path, pg="missing", mq="missing", apt=False, dry_run=False)
    assert result.returncode == 1
    assert "install postgresql rabbitmq-server with this system's package manager" in result.stderr
    assert {call.split()[0] for call in calls} <= PROBES


def test_servers_that_never_answer_fail_after_the_wait_and_say_which(tmp_path: Path) -> None:
    run_services(tmp_path, pg="running", mq="running")
    (tmp_path / "bin" / "rabbitmq-server").write_text("#!/bin/sh\n")  # starts nothing
    (tmp_path / "state" / "mq-running").unlink()
    env = {
        "PATH": str(tmp_path / "bin"),
        "STATE": str(tmp_path / "state"),
        "STUB_UID": "0",
        "OUTPLAN_SERVICES_WAIT_SECONDS": "2",
    }
    result = run_harness(tmp_path, env, "main")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "PostgreSQL or RabbitMQ did not come up within 2 s: PostgreSQL is up and RabbitMQ is not running"
    )
