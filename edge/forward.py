"""Forwarder: moves one stream of the buffer to one sink, with its own cursor (the loop is
StreamConsumer's; this module says how a batch is delivered).

Each sink has a forwarder per stream it consumes (raw or rollup, node health, and the
events fast lane), so a dead sink stalls nobody else, and events never queue behind a
telemetry backlog: the event forwarder sends as soon as a commit wakes it, with no
batching delay. Telemetry forwarders wait up to `batch_wait_ms` for a fuller batch.

Delivery policy (the sink only classifies one attempt):
- ok: advance the cursor past the batch (posted to the commit loop, the one writer,
  which stores it with its next transaction);
- retry (5xx, timeouts, refused connections): exponential backoff with full jitter
  between retry_min_s and retry_max_s, or the server's Retry-After on 429/503; the
  batch is retried as it is, for ever: nothing is dropped for a sink being down;
- too large (413): split in halves and send each;
- rejected (other 4xx): split in halves to find the lines the server refuses; each
  refused line goes to the dead-letter table (reason `sink_rejected`, source = the sink);
  a field type conflict (400) names its measurement and field, and every line of the
  batch that sends it goes there at once (edge/conflicts.py).
A sink going down and coming back is said once each (edge/sinkhealth.py).
A batch written twice (a crash after the write, before the cursor moved) is harmless:
the same points with the same timestamps overwrite themselves.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable

from edge import sinks as sinkmod
from edge.buffer import DurableBuffer, now_ms
from edge.config import SinkConfig
from edge.conflicts import TypeConflict, type_conflict
from edge.consumer import StreamConsumer
from edge.deadletters import DeadLetter
from edge.metrics import EdgeMetrics
from edge.outbox import OutboxRow, Stream
from edge.sinkhealth import SinkHealth

log = logging.getLogger("urbansense.edge.forward")

SINK_REJECTED = "sink_rejected"


class Forwarder(StreamConsumer):
    """One stream to one sink; the cursor is named after the sink."""

    def __init__(
        self,
        buffer: DurableBuffer,
        cfg: SinkConfig,
        stream: Stream,
        metrics: EdgeMetrics,
        stop: threading.Event,
        *,
        on_crash: Callable[[], None] | None = None,
        health: SinkHealth | None = None,
    ) -> None:
        super().__init__(
            buffer,
            cfg.name,
            stream,
            stop,
            name=f"forward-{cfg.name}-{stream.label}",
            max_lines=cfg.batch_max_lines,
            on_crash=on_crash,
        )
        self.cfg = cfg
        self.metrics = metrics
        # Events never wait for company: they are the fast lane.
        self.wait_s = 0.0 if stream == Stream.EVENT else cfg.batch_wait_ms / 1000.0
        self.sink = sinkmod.make_sink(cfg)
        self.failures = 0
        # Shared by the sink's forwarders: down and back are said once per sink.
        self.health = health or SinkHealth(cfg.name, metrics, lambda: 0)
        # Every sink's counters exist from the start at 0, so a rate or an alert on them
        # works before the first write (Prometheus' usual practice for known labels).
        metrics.sink_written.labels(cfg.name)
        metrics.sink_failed.labels(cfg.name)
        metrics.sink_rejected.labels(cfg.name)

    def begin(self) -> None:
        self.sink.ensure_database()

    def close(self) -> None:
        self.sink.close()

    def batch(self, conn: sqlite3.Connection, mark: int) -> list[OutboxRow]:
        """Telemetry waits up to `batch_wait_ms` after its oldest row for a fuller batch."""
        rows = super().batch(conn, mark)
        if rows and self.wait_s:
            lines = sum(r.n for r in rows)
            remaining = rows[0].at_ms / 1000.0 + self.wait_s - time.time()
            if lines < self.max_lines and remaining > 0:
                self.stop_event.wait(min(remaining, self.wait_s))
                rows = super().batch(conn, mark)  # none if the size cap took them meanwhile
        return rows

    def deliver(self, rows: list[OutboxRow]) -> bool:
        # A failed attempt comes back after its backoff, and the batch is read again: the
        # size cap may have dropped some of its rows meanwhile.
        return self._write(self._lines(rows), top=True) is True

    @staticmethod
    def _lines(rows: list[OutboxRow]) -> list[str]:
        out: list[str] = []
        for r in rows:
            if r.n == 1:
                out.append(r.body)
            else:
                out.extend(r.body.split("\n"))
        return out

    def _backoff(self, outcome: sinkmod.WriteOutcome) -> float:
        if outcome.after_s is not None:
            return min(outcome.after_s, 3600.0)
        ceiling = min(self.cfg.retry_max_s, self.cfg.retry_min_s * (2 ** min(self.failures, 30)))
        return random.uniform(self.cfg.retry_min_s, max(self.cfg.retry_min_s, ceiling))

    def _write(self, lines: list[str], top: bool = False) -> bool | None:
        """Write lines until done (written or dead-lettered): True. False when stopping.
        With top=True a failed attempt returns None after the backoff (the caller
        re-reads the batch); parts of a split batch are retried here."""
        name = self.cfg.name
        while not self.stop_event.is_set():
            outcome = self.sink.write("\n".join(lines))
            self.metrics.sink_requests.labels(name, outcome.kind).inc()
            if outcome.kind == sinkmod.OK:
                self.failures = 0
                self.health.ok()
                self.metrics.sink_written.labels(name).inc(len(lines))
                return True
            if outcome.kind in (sinkmod.TOO_LARGE, sinkmod.REJECTED):
                conflict = type_conflict(outcome.detail) if outcome.kind == sinkmod.REJECTED else None
                if conflict is not None:
                    refused = [line for line in lines if conflict.concerns(line)]
                    if refused:
                        rest = [line for line in lines if not conflict.concerns(line)]
                        self._conflicting(refused, conflict, outcome)
                        # A partial write stored the rest already: writing it again is
                        # harmless (same points, same times) and makes sure of it.
                        return bool(self._write(rest)) if rest else True
                if len(lines) > 1:
                    half = len(lines) // 2
                    return bool(self._write(lines[:half]) and self._write(lines[half:]))
                self._refused(lines, outcome)
                if (name, outcome.status) not in self.health.said:
                    self.health.said.add((name, outcome.status))
                    log.warning(
                        "sink %s refused a line (HTTP %s): %s; it goes to dead letters (sink_rejected), "
                        "as will further lines it refuses so (counted in "
                        "urbansense_edge_sink_rejected_lines_total)",
                        name,
                        outcome.status,
                        outcome.detail[:200],
                    )
                return True
            self.failures += 1
            self.metrics.sink_failed.labels(name).inc()
            delay = self._backoff(outcome)
            cause = (
                f"HTTP {outcome.status}: {outcome.detail[:200]}" if outcome.status else outcome.detail[:200]
            )
            self.health.failed(cause, delay)
            self.stop_event.wait(delay)
            if top:
                return None if not self.stop_event.is_set() else False
        return False

    def _refused(self, lines: list[str], outcome: sinkmod.WriteOutcome) -> None:
        """Lines the sink will never take: to dead letters, with its answer."""
        for line in lines:
            self.buffer.post_dead_letter(
                DeadLetter(
                    SINK_REJECTED,
                    None,
                    line.encode(),
                    f"{outcome.status}: {outcome.detail[:500]}",
                    now_ms(),
                    self.cfg.name,
                )
            )
        self.metrics.sink_rejected.labels(self.cfg.name).inc(len(lines))

    def _conflicting(self, lines: list[str], conflict: TypeConflict, outcome: sinkmod.WriteOutcome) -> None:
        """Every line of a type conflict to dead letters; said once per measurement and
        field, with the fix."""
        name = self.cfg.name
        self._refused(lines, outcome)
        self.metrics.sink_type_conflicts.labels(name, conflict.measurement, conflict.field).inc(len(lines))
        key = (conflict.measurement, conflict.field)
        if key in self.health.said:
            return
        self.health.said.add(key)
        log.warning(
            "sink %s: field %s of measurement %s is %s there and these lines send %s: the server "
            "refuses them all; %d lines so far to dead letters (sink_rejected), the rest counted in "
            "urbansense_edge_sink_type_conflict_lines_total{measurement=%r,field=%r}; %s",
            name,
            conflict.field,
            conflict.measurement,
            conflict.held,
            conflict.sent,
            len(lines),
            conflict.measurement,
            conflict.field,
            conflict.advice(self.cfg.database or self.cfg.bucket or ""),
        )
