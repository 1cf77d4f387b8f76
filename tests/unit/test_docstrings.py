"""Every public module, class and function of ``worker`` and ``contracts`` says what it is for.

Public: a name without a leading underscore, at module level or in a public class. The docstring
is where a reader finds shapes, units (ms, s, bytes), the errors raised and where a rule comes
from; this test only proves that there is one, and that it is more than a placeholder.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "contracts")
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _public(node: ast.AST, prefix: str) -> Iterator[tuple[str, Definition]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, Definition) and not child.name.startswith("_"):
            yield f"{prefix}{child.name}", child
            if isinstance(child, ast.ClassDef):
                yield from _public(child, f"{prefix}{child.name}.")


def undocumented() -> list[str]:
    """``path:line name`` of each public definition (or module) without a docstring of substance."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            tree = ast.parse(path.read_text(), str(relative))
            if len((ast.get_docstring(tree) or "").strip()) < 10:
                found.append(f"{relative}: the module")
            for name, node in _public(tree, ""):
                if len((ast.get_docstring(node) or "").strip()) < 10:
                    found.append(f"{relative}:{node.lineno} {name}")
    return found


def test_every_public_definition_has_a_docstring() -> None:
    assert undocumented() == []


def test_the_check_finds_a_definition_without_one(tmp_path: Path) -> None:
    tree = ast.parse(
        '"""A module."""\n\nclass Thing:\n    """A thing."""\n\n    def act(self) -> None:\n        pass\n'
    )
    assert [name for name, node in _public(tree, "") if not ast.get_docstring(node)] == ["Thing.act"]
