from __future__ import annotations

import pytest

from tests.support.edge_process import started_edges


@pytest.fixture
def edges(request):
    """Start edge subprocesses; every one still running is stopped after the test, and a
    failing test gets each edge's log attached."""
    yield from started_edges(request)
