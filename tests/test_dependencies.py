"""Imports run one way: cli -> everything; demo -> hil -> field -> protocols;
edge -> protocols; ops -> protocols. Nothing imports cli. The firmware is never imported by
CPython code (it is MicroPython, carried as files)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("protocols", "edge", "ops", "field", "hil", "demo", "cli", "firmware", "tests")
# What each package may import of the project (besides itself).
ALLOWED = {
    "protocols": set(),
    "edge": {"protocols"},
    "ops": {"protocols"},
    "field": {"protocols"},
    "hil": {"field", "protocols"},
    "demo": {"hil", "field", "protocols"},
    "cli": {"protocols", "edge", "ops", "field", "hil", "demo"},
}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages a module imports (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in PROJECT)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_lies_below_it(package):
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        extra = project_imports(path) - ALLOWED[package] - {package}
        if extra:
            wrong[str(path.relative_to(ROOT))] = sorted(extra)
    assert not wrong, f"{package}/ may import only {sorted(ALLOWED[package])}: {wrong}"


def test_a_rule_break_is_seen(tmp_path):
    """The check reads imports inside functions too (lazy imports are imports)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from hil.services import free_port\n")
    assert project_imports(module) == {"hil"}
