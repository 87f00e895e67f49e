"""The `urbansense` command as a user runs it: the console script of this venv, in a
subprocess of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

URBANSENSE = str(Path(sys.executable).parent / "urbansense")


def urbansense(
    *args: str,
    timeout: float = 120,
    cwd: Path | None = None,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `urbansense ARGS...`, its output captured as text. `env` adds to this process's
    environment; `stdin` is what the command reads."""
    text_in = stdin.decode() if isinstance(stdin, bytes) else stdin
    return subprocess.run(
        [URBANSENSE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        input=text_in,
        env={**os.environ, **env} if env else None,
    )
