"""Producers and subscribers import ``contracts`` without the worker's dependencies."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

CHECK = """
import sys
import contracts
from contracts import parse_event, CreateOutplan, Reply  # the public API
heavy = sorted(m for m in sys.modules if m.split('.')[0] in
               {'worker', 'aio_pika', 'aiormq', 'pamqp', 'asyncpg', 'structlog', 'pydantic_settings'})
print(','.join(heavy))
"""


def test_contracts_import_pydantic_only() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


# What a producer or subscriber installs for ``contracts``: pydantic (with what it depends on)
# and the phone-number metadata.
ALLOWED = {
    "pydantic",
    "pydantic_core",
    "typing_extensions",
    "typing_inspection",
    "annotated_types",
    "phonenumbers",
}
THIRD_PARTY = """
import sys
import contracts
from contracts import CreateOutplan, parse_event
CreateOutplan.model_validate_json(
    '{"customer_id": "5e7c1f0e-2b1a-4c55-9d3e-0c1f2a3b4c5d",'
    ' "source": {"type": "tel", "target": "+44 20 7946 0958"}}')
found = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names) - {'contracts', '__main__'}
print(','.join(sorted(m for m in found if not m.startswith('_'))))
"""


def test_contracts_need_only_pydantic_and_the_phone_metadata() -> None:
    result = subprocess.run([sys.executable, "-c", THIRD_PARTY], capture_output=True, text=True, check=True)
    assert set(filter(None, result.stdout.strip().split(","))) <= ALLOWED


def test_contracts_source_never_names_the_worker() -> None:
    from pathlib import Path

    import contracts

    for path in Path(contracts.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "import worker" not in text and "from worker" not in text, path
