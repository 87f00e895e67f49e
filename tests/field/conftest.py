"""Fixtures for the provisioning tests: virtual boards (real MicroPython behind a pty)
and bundles (the stand-in program's, and the real firmware built with the CLI)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from field import bundle as bundles
from field.toolchain import FIRMWARE_DIR
from hil.boards.virtual import VirtualBoard
from tests.support.cli import urbansense

STANDIN = Path(__file__).resolve().parent / "standin"


@pytest.fixture(scope="session")
def standin_bundle(tmp_path_factory) -> bundles.Bundle:
    """A bundle of the stand-in node program with the firmware's own MQTT client."""
    tree = tmp_path_factory.mktemp("standin-firmware")
    shutil.copy(STANDIN / "main.py", tree / "main.py")
    (tree / "lib").mkdir()
    shutil.copy(FIRMWARE_DIR / "lib" / "mqtt_client.py", tree / "lib" / "mqtt_client.py")
    return bundles.build(tmp_path_factory.mktemp("standin-bundle"), firmware=tree)


@pytest.fixture(scope="session")
def firmware_bundle(tmp_path_factory) -> Path:
    """The real firmware, built as a technician builds it: `urbansense node build`."""
    out = tmp_path_factory.mktemp("firmware-bundle")
    proc = urbansense("node", "build", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bundle"] == str(out)
    return out


@pytest.fixture
def boards(tmp_path, request) -> Iterator[Callable[..., VirtualBoard]]:
    """Start virtual boards (each with its own flash folder); all stop at the end. A failing
    test gets the tail of every board's console in its report."""
    started: list[VirtualBoard] = []

    def make(name: str = "board") -> VirtualBoard:
        board = VirtualBoard(tmp_path / name / "flash", workdir=tmp_path / name).start()
        started.append(board)
        return board

    yield make
    failed = getattr(request.node, "rep_call", None)
    for board in started:
        board.stop()
        if failed is not None and failed.failed:
            print(f"--- console of {board.flash}:\n{board.console()[-3000:]}")
