"""Firmware tests run the firmware under the MicroPython unix port, compiled with mpy-cross
exactly as it goes onto a board (hil/sim_build.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.sim_build import build_bundle, micropypath
from tests.support.edge_standin import ReceiptEdge


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def node_path(bundle) -> str:
    return micropypath(bundle)


@pytest.fixture
def edge(mosquitto):
    """The edge's part for tests of nodes alone: a receipt for every reading and event the
    zone's nodes publish (tests/support/edge_standin.py), as the real edge sends after its
    commit. Without one, a node keeps what it sent and sends it again (SPEC 7.1.3)."""
    receipts = ReceiptEdge(mosquitto.host, mosquitto.port)
    yield receipts
    receipts.close()
    assert receipts.errors == [], receipts.errors  # every message decoded
