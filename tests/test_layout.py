"""The shape of the tests and benchmarks, read from their imports (with `ast`, nothing is
run): no module imports a test module or a conftest.py (fixtures reach tests through
pytest, not imports); helpers that more than one folder uses live in tests/support, which
imports nothing else of the tests; a folder's own helpers (tests/ops/city.py) serve that
folder only; bench/ takes nothing from the tests but tests.support."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = "tests.support"


@dataclass(frozen=True)
class Source:
    label: str  # where a problem is reported: the file's path
    module: str  # its dotted name, e.g. tests.ops.city
    text: str
    is_package: bool = False


def source_of(path: Path) -> Source:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return Source(str(path.relative_to(ROOT)), ".".join(parts), path.read_text(), is_package)


def imported(source: Source) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import statement, wherever it stands (a function's
    late import too): `import a.b` gives ("a.b", []), `from a import b` gives ("a", ["a.b"])
    since b may be a module of a or a name in it. Relative imports are resolved against the
    importing module."""
    package = source.module.split(".")
    if not source.is_package:
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(source.text)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, module, [f"{module}.{alias.name}" for alias in node.names]))
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _is_test_module(name: str) -> bool:
    return any(part.startswith("test_") or part == "conftest" for part in name.split(".")[1:])


def _folder(module: str) -> str:
    return module.rsplit(".", 1)[0]


def _problem(here: str, module: str) -> str | None:
    """Why `here` may not import `module`, or None."""
    if not _within(module, "tests") or module == "tests" or _within(module, SUPPORT):
        return None
    if _within(here, "bench"):
        return f"bench/ takes only {SUPPORT} from the tests"
    if _within(here, SUPPORT):
        return f"{SUPPORT} imports nothing else of the tests"
    if _within(here, "tests") and module != _folder(here) and _folder(module) != _folder(here):
        return f"another folder's helper (shared helpers live in {SUPPORT})"
    return None


def problems(sources: list[Source]) -> list[str]:
    """One line per import statement that breaks the layout."""
    found = []
    for source in sources:
        for line, module, names in imported(source):
            tests = [n for n in [module, *names] if _within(n, "tests") and _is_test_module(n)]
            why = (
                f"a test module or conftest (move what it shares to {SUPPORT})"
                if tests
                else _problem(source.module, module)
            )
            if why is not None:
                found.append(f"{source.label}:{line}: imports {(tests or [module])[0]}: {why}")
    return found


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_tests_and_bench_import_as_the_layout_says():
    sources = [source_of(p) for p in python_files("tests") + python_files("bench")]
    assert len(sources) > 50 and any(s.module == "bench._edge_common" for s in sources)
    assert problems(sources) == []


def test_every_kind_of_import_that_breaks_the_layout_is_named():
    tree = [
        Source("a", "tests.field.test_flash", "from .conftest import urbansense"),
        Source(
            "b",
            "tests.hil.test_run_cli",
            "def f():\n    from tests.demo.test_demo_run import processes_using",
        ),
        Source("c", "tests.security.test_fuzz_edge", "from tests.security import test_fuzz_decoder"),
        Source("d", "tests.security.test_limits", "from ..edge import helpers"),
        Source("e", "bench._edge_common", "import tests.edge.helpers as h"),
        Source("f", "tests.support.fleet", "from tests.firmware.broker_log import BrokerLog"),
        # what is allowed: support from anywhere, a folder's own helpers and package
        Source("g", "tests.ops.test_query", "from tests.ops import city\nfrom tests.ops.expected import x"),
        Source("h", "tests.support", "from tests.support.site import topic", is_package=True),
        Source("i", "bench.edge_recovery", "from tests.support.waiting import wait_for\nimport json"),
    ]
    found = problems(tree)
    assert [line.split(":", 1)[0] for line in found] == ["a", "b", "c", "d", "e", "f"], found
    assert "a:1: imports tests.field.conftest: a test module" in found[0]
    assert "b:2: imports tests.demo.test_demo_run: a test module" in found[1]
    assert "c:1: imports tests.security.test_fuzz_decoder: a test module" in found[2]
    assert "d:1: imports tests.edge: another folder's helper" in found[3]
    assert "e:1: imports tests.edge.helpers: bench/ takes only" in found[4]
    assert "f:1: imports tests.firmware.broker_log: tests.support imports nothing else" in found[5]
