"""A 3-member NATS cluster (JetStream + its MQTT gateway) per test, on free loopback ports:
tests here kill, restart and wipe its members, so none is shared. A failing test gets
each member's log tail attached."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.services import NatsCluster
from hil.sim_build import build_bundle
from tests.support.edge_process import started_edges


@pytest.fixture
def nats_cluster(tmp_path_factory, request):
    cluster = NatsCluster(tmp_path_factory.mktemp("nats"))
    try:
        cluster.start()
        yield cluster
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(f"\n--- NATS cluster logs ---\n{cluster.log_tail(40)}")
        cluster.stop()


@pytest.fixture
def edges(request):
    yield from started_edges(request)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle"))
