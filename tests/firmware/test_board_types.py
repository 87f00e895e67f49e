"""The firmware as each board sees it, type-checked with mypy against the stubs of that
board's MicroPython port: hal/esp32.py and the shared modules against
micropython-esp32-esp32-generic-stubs, hal/rp2.py and the shared modules against
micropython-rp2-rpi-pico-w-stubs (both 1.29, from PyPI). deploy/run.sh installs each
into a folder of its own under .venv/board-stubs/, since each is a typeshed of its own
(builtins, time, socket, json as MicroPython has them) that would shadow CPython's; mypy
takes it as its typeshed (--custom-typeshed-dir) and finds the port's modules (machine,
network, esp32 ...) on MYPYPATH.

What this catches is a call the port does not have or takes otherwise: an attribute, a
signature, a constant. Where the stubs are wrong, the firmware line says so with the
MicroPython source it follows and a `type: ignore` of that one error code; an ignore no
longer needed fails the check (warn_unused_ignores)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from field.toolchain import FIRMWARE_DIR, SOURCE_ROOT

STUBS = SOURCE_ROOT / ".venv" / "board-stubs"
HAL_MODULES = {"esp32": "hal.esp32", "rp2": "hal.rp2"}
SIM_MODULES = (
    "hal.sim",
    "hal.sim_world",
    "hal.sim_air",
    "hal.sim_leak",
    "hal.sim_manhole",
    "hal.sim_parking",
)
# What runs on a board besides its HAL module: the entry point, the node, the drivers,
# the node's library, and the HAL's shared parts.
SHARED = ("main.py", "hal/__init__.py", "hal/board.py", "hal/common.py", "node", "drivers", "lib")

CONFIG = """\
[mypy]
custom_typeshed_dir = {stubs}
mypy_path = {path}
explicit_package_bases = True
check_untyped_defs = True
warn_unused_ignores = True
# The firmware is unannotated MicroPython written for the heap: names are dropped by
# binding them to None (a module, to let its code go), lists start empty, names are
# bound again in branches. Those codes say nothing about the port's API.
disable_error_code = var-annotated, no-redef, assignment, union-attr

# The other board's HAL module and the sim's never run on this board.
[mypy-{skipped}]
follow_imports = skip

# protocols/ is typed CPython code shared with the edge, checked there.
[mypy-protocols.*]
follow_imports = silent

# lib/mqtt_client.py keeps [asyncio.Event, acked] pairs in lists, which mypy types
# list[object]: their .wait() is no port API.
[mypy-mqtt_client]
disable_error_code = attr-defined

# Errors inside the stubs themselves (1.29.0.post1), not in their use: _mpy_shed/ names
# ABC and _io without importing them, math.pyi uses inf and nan before defining them,
# machine.pyi's ADC overloads name an undefined `adcchannel`, SPI's LSB/MSB are
# redefined, network.pyi defines LAN twice, vfs.pyi's block devices are abstract.
[mypy-_mpy_shed.*,math,machine,network,vfs,rp2]
ignore_errors = True
"""


def stubs_for(chip: str) -> Path:
    folder = STUBS / chip
    assert (folder / "stdlib" / "VERSIONS").exists(), (
        f"no stubs for {chip} in {folder}: `bash deploy/run.sh test` installs them"
    )
    return folder


@pytest.mark.parametrize("chip", sorted(HAL_MODULES))
def test_the_firmware_type_checks_against_the_ports_stubs(tmp_path, chip):
    stubs = stubs_for(chip)
    skipped = [m for c, m in HAL_MODULES.items() if c != chip] + list(SIM_MODULES)
    config = tmp_path / "mypy.ini"
    config.write_text(
        CONFIG.format(
            stubs=stubs,
            path=os.pathsep.join(str(p) for p in (stubs, FIRMWARE_DIR, FIRMWARE_DIR / "lib", SOURCE_ROOT)),
            skipped=",".join(skipped),
        )
    )
    files = [*SHARED, HAL_MODULES[chip].replace(".", "/") + ".py"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / "cache"),
            *files,
        ],
        cwd=FIRMWARE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout, proc.stdout


def test_a_call_the_port_does_not_have_is_an_error(tmp_path):
    """The check can fail: a module calling what the rp2 port has not (the esp32 module,
    read_uv() on an ADC) is refused against the Pico W's stubs. (Those stubs do declare
    HARD_RESET, DEEPSLEEP_RESET and SOFT_RESET, which ports/rp2/modmachine.c has not:
    their use on an rp2 is caught by the stand-in machine of tests/firmware/boards, not
    here.)"""
    stubs = stubs_for("rp2")
    probe = tmp_path / "probe.py"
    probe.write_text("import machine\nimport esp32\nmachine.ADC(machine.Pin(29)).read_uv()\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--custom-typeshed-dir",
            str(stubs),
            "--cache-dir",
            str(tmp_path / "cache"),
            str(probe),
        ],
        cwd=tmp_path,
        env=dict(os.environ, MYPYPATH=str(stubs)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert '"ADC" has no attribute "read_uv"' in proc.stdout, proc.stdout
    assert 'module named "esp32"' in proc.stdout, proc.stdout
