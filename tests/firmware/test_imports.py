"""The firmware's imports run one way (firmware/README.md): the HAL never imports the node,
and no module of the node imports node.app, which loads them. Read from the sources (the
firmware is never imported by CPython); imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

from field.toolchain import FIRMWARE_DIR


def imports(path: Path) -> set[str]:
    """Every module a source file imports, wherever the import statement stands."""
    found = set()
    for stmt in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(stmt, ast.Import):
            found.update(alias.name for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom) and stmt.module:
            found.add(stmt.module)
            found.update(f"{stmt.module}.{alias.name}" for alias in stmt.names)
    return found


def test_the_hal_does_not_import_the_node():
    sources = sorted((FIRMWARE_DIR / "hal").glob("*.py"))
    assert sources
    for path in sources:
        into_node = [m for m in imports(path) if m == "node" or m.startswith("node.")]
        assert into_node == [], f"{path.name} imports {into_node}"


def test_no_node_module_imports_the_app():
    sources = sorted((FIRMWARE_DIR / "node").glob("*.py"))
    assert any(path.name == "app.py" for path in sources)
    for path in sources:
        if path.name != "app.py":
            assert "node.app" not in imports(path), f"{path.name} imports node.app"
