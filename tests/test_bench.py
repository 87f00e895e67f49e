"""Every benchmark script loads: its imports resolve (a helper it takes from
bench/_edge_common.py or tests/support still exists). Loading runs no benchmark: each
script starts its work only under `if __name__ == "__main__"`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
LOAD = (
    "import importlib.util, sys; sys.path.insert(0, sys.argv[2]); "
    "spec = importlib.util.spec_from_file_location('bench_script', sys.argv[1]); "
    "spec.loader.exec_module(importlib.util.module_from_spec(spec))"
)


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_loads(script):
    proc = subprocess.run(
        [sys.executable, "-c", LOAD, str(BENCH / script), str(BENCH)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BENCH.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
