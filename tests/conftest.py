"""Session fixtures that start the real servers: Mosquitto, InfluxDB 1.6, VictoriaMetrics.

Each runs on a free loopback port with its state in a pytest temp dir, is waited on until
ready, and is stopped at the end. A failing test gets the tails of the logs of every
server it used attached to its report.

Shared (session) servers are for tests that only use them. A test that stops, kills or
restarts a server asks for its own through the `*_factory` fixtures, so no other test
sees the fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil.services import InfluxDBServer, ManagedServer, MosquittoServer, VictoriaMetricsServer

_USED_KEY = pytest.StashKey[list]()


def _remember(request: pytest.FixtureRequest, server: ManagedServer) -> None:
    node = request.node
    used = node.stash.setdefault(_USED_KEY, [])
    used.append(server)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        # Fixtures read it at teardown to print what a failed test's processes said.
        item.rep_call = report
    if report.failed:
        for server in item.stash.get(_USED_KEY, []):
            report.sections.append((f"{server.name} log (port {server.port})", server.log_tail(60)))
    return report


def _factory(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ManagedServer]]:
    started: list[ManagedServer] = []

    def make(**kwargs) -> ManagedServer:
        server = cls(tmp_path_factory.mktemp(cls.name), **kwargs)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def _mosquitto_session(tmp_path_factory) -> Iterator[MosquittoServer]:
    yield from _single(MosquittoServer, tmp_path_factory)


@pytest.fixture(scope="session")
def _influxdb_session(tmp_path_factory) -> Iterator[InfluxDBServer]:
    yield from _single(InfluxDBServer, tmp_path_factory)


@pytest.fixture(scope="session")
def _victoria_session(tmp_path_factory) -> Iterator[VictoriaMetricsServer]:
    yield from _single(VictoriaMetricsServer, tmp_path_factory)


def _single(cls, tmp_path_factory):
    server = cls(tmp_path_factory.mktemp(cls.name))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mosquitto(_mosquitto_session, request) -> MosquittoServer:
    """The session's broker (do not stop it: use mosquitto_factory for fault tests)."""
    if not _mosquitto_session.running():
        _mosquitto_session.start()
    _remember(request, _mosquitto_session)
    return _mosquitto_session


@pytest.fixture
def influxdb(_influxdb_session, request) -> InfluxDBServer:
    """The session's InfluxDB 1.6 (do not stop it: use influxdb_factory for fault tests)."""
    if not _influxdb_session.running():
        _influxdb_session.start()
    _remember(request, _influxdb_session)
    return _influxdb_session


@pytest.fixture
def victoria(_victoria_session, request) -> VictoriaMetricsServer:
    """The session's VictoriaMetrics, the /api/v2/write endpoint for the v2 sink."""
    if not _victoria_session.running():
        _victoria_session.start()
    _remember(request, _victoria_session)
    return _victoria_session


def _remembering(factory, request):
    def make(**kwargs):
        server = factory(**kwargs)
        _remember(request, server)
        return server

    return make


@pytest.fixture
def mosquitto_factory(tmp_path_factory, request):
    """Start private brokers that a test may stop, kill or restart."""
    gen = _factory(MosquittoServer, tmp_path_factory)
    yield _remembering(next(gen), request)
    next(gen, None)


@pytest.fixture
def influxdb_factory(tmp_path_factory, request):
    """Start private InfluxDB servers that a test may stop, kill or restart."""
    gen = _factory(InfluxDBServer, tmp_path_factory)
    yield _remembering(next(gen), request)
    next(gen, None)


@pytest.fixture
def victoria_factory(tmp_path_factory, request):
    gen = _factory(VictoriaMetricsServer, tmp_path_factory)
    yield _remembering(next(gen), request)
    next(gen, None)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
