"""``outplan-contracts``: built from ``contracts/`` alone, installed without the worker's stack."""

import json
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
# What outplan-worker needs and a producer or subscriber must not be made to install.
WORKER_STACK = {
    "aio-pika",
    "aiormq",
    "pamqp",
    "asyncpg",
    "uvloop",
    "prometheus-client",
    "structlog",
    "orjson",
    "pyyaml",
    "pydantic-settings",
}

USE = """
import json, uuid
from pathlib import Path
import contracts
from contracts import COMMANDS, CreateOutplan, OutplanCreated, Reply, UpdateDialInfo, names, parse_event

customer, outplan = str(uuid.uuid4()), str(uuid.uuid4())
source = {"type": "tel", "target": "+44 20 7946 0958"}
create = CreateOutplan.model_validate_json(
    json.dumps({"customer_id": customer, "source": source, "dial_timeout": 45000}))
assert create.source.target == "+442079460958" and create.dial_timeout == 45000
assert COMMANDS[names.CREATE] is CreateOutplan and names.UPDATE_DIAL_INFO in COMMANDS
try:
    update = {"customer_id": customer, "id": outplan, "dial_timeout": 30}
    UpdateDialInfo.model_validate_json(json.dumps(update))
except Exception as exc:
    assert "dial_timeout" in str(exc)
else:
    raise AssertionError("a 30 ms dial_timeout was accepted")
data = {"id": outplan, "customer_id": customer, "name": "n", "detail": "",
        "source": {"type": "tel", "target": "+15559876543", "target_name": "", "name": "", "detail": ""},
        "dial_timeout": 30000, "try_interval": 60000, **{f"max_try_count_{i}": 1 for i in range(5)},
        "tm_create": "2026-01-01 00:00:00.000000", "tm_update": "2026-01-01 00:00:00.000000",
        "tm_delete": "9999-01-01 00:00:00.000000"}
event = parse_event(json.dumps({
    "specversion": "1.0", "id": str(uuid.uuid4()), "source": "outplan-worker", "type": "outplan_created",
    "subject": outplan, "time": "2026-01-01T00:00:00.000000Z", "datacontenttype": "application/json",
    "customerid": customer, "outplanversion": 1, "eventsequence": 1, "data": data}))
assert isinstance(event, OutplanCreated) and str(event.data.id) == outplan
assert Reply.model_validate_json('{"status_code": 404, "error": {"status": "NOT_FOUND", '
                                 '"reason": "OUTPLAN_NOT_FOUND", "message": "no such outplan"}}').ok is False
here = Path(contracts.__file__).parent
assert (here / "py.typed").exists() and (here / "asyncapi.yaml").exists()
try:
    import contracts.client
except ImportError as exc:
    assert "outplan-contracts[client]" in str(exc), exc
else:
    raise AssertionError("contracts.client imported without aio-pika")
print(contracts.__file__)
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(specs: list[str]) -> dict[str, str]:
    """name -> specifier, e.g. {"pydantic": ">=2.10,<3"}."""
    found = {}
    for spec in specs:
        match = re.fullmatch(r"([A-Za-z0-9._-]+)\s*(.*)", spec.split(";")[0].strip())
        assert match, spec
        found[canonical(match.group(1))] = match.group(2).replace(" ", "")
    return found


def test_contracts_share_the_workers_version_and_ranges() -> None:
    worker = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    own = tomllib.loads((CONTRACTS / "pyproject.toml").read_text())["project"]
    assert own["version"] == worker["version"]
    worker_ranges = requirements(worker["dependencies"])
    extras = own["optional-dependencies"]
    own_ranges = requirements(own["dependencies"] + extras["client"] + extras["tracing"])
    assert "pydantic" in own_ranges
    for name, spec in own_ranges.items():
        if name in worker_ranges:
            assert spec == worker_ranges[name], f"{name}: {spec} here, {worker_ranges[name]} in the worker"
    assert not set(requirements(own["dependencies"])) & WORKER_STACK


def test_the_contracts_wheel_installs_alone_and_works(tmp_path: Path) -> None:
    # Built from a copy, so that the build leaves nothing in the work tree.
    source = tmp_path / "source"
    shutil.copytree(CONTRACTS, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(source)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = dist.glob("outplan_contracts-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True
    ).stdout
    installed = {canonical(p["name"]) for p in json.loads(listed)}
    assert "outplan-contracts" in installed and "pydantic" in installed
    assert not installed & WORKER_STACK, f"the contracts pulled in {sorted(installed & WORKER_STACK)}"
    assert "outplan-worker" not in installed

    # Run outside the repository, so that `import contracts` can only find the installed wheel.
    used = subprocess.run([python, "-c", USE], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip().startswith(str(env_dir)), used.stdout
