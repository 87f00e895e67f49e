from __future__ import annotations

import pytest

from tests.support.edge_process import EdgeProcess


@pytest.fixture
def edges(request):
    """Start edge subprocesses; every one still running is stopped after the test, and a
    failing test gets each edge's log attached."""
    started: list[EdgeProcess] = []

    def make(config) -> EdgeProcess:
        edge = EdgeProcess(config)
        started.append(edge)
        return edge

    yield make
    failed = getattr(request.node, "rep_call", None)
    for edge in started:
        if edge.running():
            edge.stop()
        if failed is not None and failed.failed:
            print(f"\n--- {edge.config} log ---\n{edge.log_tail(80)}")
