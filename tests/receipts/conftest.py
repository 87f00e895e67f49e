"""Receipt fault tests run the real firmware (compiled as it goes onto a board) under the
MicroPython unix port, the real edge process, a private Mosquitto per test (they kill it)
and the session's InfluxDB (a database per test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.sim_build import build_bundle
from tests.support.edge_process import started_edges


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture
def edges(request):
    yield from started_edges(request)
