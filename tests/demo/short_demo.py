"""The short city the demo tests run: 15 s, four nodes per zone, a 2 s interval."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cli import URBANSENSE


def run_short_demo(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [URBANSENSE, "demo", "--duration", "15", "--nodes-per-zone", "4", "--interval", "2"]
    return subprocess.run(
        [*argv, "--state-dir", str(state), *extra], capture_output=True, text=True, timeout=240
    )
