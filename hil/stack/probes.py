"""Measuring when something became visible: an event point in InfluxDB, polled from the
moment its stimulus was set. Shared by the demo's staged alarms and HIL expectations."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from hil.services import InfluxDBServer, ServiceError
from protocols.names import EVENTS

POLL_S = 0.02


@dataclass(frozen=True)
class Moment:
    mono: float  # time.monotonic()
    wall: float  # time.time()

    @classmethod
    def now(cls) -> Moment:
        return cls(time.monotonic(), time.time())


class EventPointProbe:
    """Polls `events` in one database, in a thread, until a point of (node, event, state)
    dated at or after the start shows up or `give_up_s` passes."""

    def __init__(
        self,
        influx: InfluxDBServer,
        db: str,
        node: str,
        event: str,
        state: bool,
        started: Moment,
        give_up_s: float,
    ) -> None:
        self.influx, self.db = influx, db
        self.started = started
        self.deadline = started.mono + give_up_s
        # The point's time is the node's sample time, after the stimulus; a second's margin
        # covers clock granularity and edge-computed times (arrival - age_ms).
        since_ms = int(started.wall * 1000) - 1000
        self.query = (
            f'SELECT "state" FROM "{EVENTS}" WHERE "node" = \'{node}\' '
            f'AND "event" = \'{event}\' AND "state" = {"true" if state else "false"} '
            f"AND time >= {since_ms}ms"
        )
        self.seen_after_ms: float | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True, name=f"probe-{node}-{event}")
        self.thread.start()

    def _poll(self) -> None:
        while time.monotonic() < self.deadline and not self._stop.is_set():
            try:
                if self.influx.query(self.query, db=self.db):
                    self.seen_after_ms = (time.monotonic() - self.started.mono) * 1000
                    return
            except (OSError, ServiceError) as err:  # InfluxDB down (a fault step): keep trying
                self.last_error = str(err)
            time.sleep(POLL_S)

    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self) -> float | None:
        """Wait for the probe to finish; ms from the start to visibility, or None."""
        self.thread.join()
        return self.seen_after_ms

    def cancel(self) -> None:
        self._stop.set()
        self.thread.join()
