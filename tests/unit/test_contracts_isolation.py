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


def test_contracts_source_never_names_the_worker() -> None:
    from pathlib import Path

    import contracts

    for path in Path(contracts.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "import worker" not in text and "from worker" not in text, path
