"""Fixtures the security tests share: edge subprocesses (stopped after each test, their
logs printed when it fails)."""

from __future__ import annotations

import pytest

from tests.support.edge_process import started_edges


@pytest.fixture
def edges(request):
    yield from started_edges(request)
