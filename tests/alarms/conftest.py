"""Fixtures of the alarm dispatch tests: the institutions' webhook receiver, a real SMTP
server, private Alertmanagers configured from a responsibility file, and edge processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil.services import AlertmanagerServer
from hil.webhook import WebhookReceiver
from tests.support.dispatch import alertmanager_for
from tests.support.edge_process import started_edges
from tests.support.smtp import SmtpServer


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def alertmanager(tmp_path, request) -> Iterator[Callable[[dict], tuple[AlertmanagerServer, Path]]]:
    """Start a private Alertmanager configured from a responsibility dict; returns it and
    the responsibility file. Stopped after the test; its log is shown if the test failed."""
    started: list[AlertmanagerServer] = []

    def make(resp: dict) -> tuple[AlertmanagerServer, Path]:
        am, path = alertmanager_for(tmp_path / f"dispatch-{len(started)}", resp)
        am.start()
        started.append(am)
        return am, path

    yield make
    failed = getattr(request.node, "rep_call", None)
    for am in started:
        am.stop()
        if failed is not None and failed.failed:
            print(f"\n--- alertmanager log ---\n{am.log_tail(60)}")


@pytest.fixture
def edges(request):
    """Edge subprocesses, stopped after the test (logs shown if it failed)."""
    yield from started_edges(request)
