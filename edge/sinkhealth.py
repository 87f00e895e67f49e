"""SinkHealth: whether a sink is up, shared by the forwarders of its streams, so the log
says once when the sink goes down (with the cause) and once when it comes back (how long
it was down, the attempts, the backlog), rather than a line per failed attempt; and the
`urbansense_edge_sink_up` gauge follows it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.metrics import EdgeMetrics

log = logging.getLogger("urbansense.edge.forward")

# While a sink stays down, a reminder after this many failed attempts (then every 1000).
REMIND_AT = (10, 100)


class SinkHealth:
    def __init__(self, name: str, metrics: EdgeMetrics, backlog: Callable[[], int]) -> None:
        self.name = name
        self.metrics = metrics
        self.backlog = backlog  # lines the sink has not taken yet (read when said)
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.attempts = 0
        # What was said once already (refusals by status, type conflicts by field).
        self.said: set[tuple] = set()
        metrics.sink_up.labels(name).set(1)

    def failed(self, cause: str, retry_in_s: float) -> None:
        with self._lock:
            self.attempts += 1
            attempts = self.attempts
            first = self.down_since is None
            if first:
                self.down_since = time.monotonic()
            down_for = time.monotonic() - self.down_since
        if first:
            self.metrics.sink_up.labels(self.name).set(0)
            log.warning(
                "sink %s: write failed (%s): down, keeping its lines and retrying (backlog %d lines)",
                self.name,
                cause,
                self.backlog(),
            )
        elif attempts in REMIND_AT or attempts % 1000 == 0:
            log.warning(
                "sink %s: still down after %.0f s, %d attempts (%s), next in %.1f s; backlog %d lines",
                self.name,
                down_for,
                attempts,
                cause,
                retry_in_s,
                self.backlog(),
            )

    def ok(self) -> None:
        if self.down_since is None:  # the common case: no lock taken
            return
        with self._lock:
            if self.down_since is None:
                return
            down_for = time.monotonic() - self.down_since
            attempts, self.attempts, self.down_since = self.attempts, 0, None
        self.metrics.sink_up.labels(self.name).set(1)
        log.warning(
            "sink %s: back after %.1f s down (%d failed attempts); catching up on a backlog of %d lines",
            self.name,
            down_for,
            attempts,
            self.backlog(),
        )
