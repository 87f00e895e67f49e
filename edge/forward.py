"""Forwarder: moves one stream of the buffer to one sink, with its own cursor.

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
  refused line goes to the dead-letter table (reason `sink_rejected`, source = the sink).
A batch written twice (a crash after the write, before the cursor moved) is harmless:
the same points with the same timestamps overwrite themselves.
"""
from __future__ import annotations

import logging
import random
import threading
import time

from edge import sinks as sinkmod
from edge.buffer import DurableBuffer, OutboxRow, now_ms
from edge.config import SinkConfig
from edge.metrics import EdgeMetrics

log = logging.getLogger("urbansense.edge.forward")

SINK_REJECTED = "sink_rejected"


class Forwarder(threading.Thread):
    def __init__(self, buffer: DurableBuffer, cfg: SinkConfig, stream: int, stream_name: str,
                 metrics: EdgeMetrics, stop: threading.Event, *, fast: bool = False) -> None:
        super().__init__(name=f"forward-{cfg.name}-{stream_name}", daemon=True)
        self.buffer = buffer
        self.cfg = cfg
        self.stream = stream
        self.metrics = metrics
        self.stop_event = stop
        self.wait_s = 0.0 if fast else cfg.batch_wait_ms / 1000.0
        self.sink = sinkmod.make_sink(cfg)
        self.failures = 0

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("forwarder %s crashed", self.name)
            raise
        finally:
            self.sink.close()

    def _run(self) -> None:
        conn = self.buffer.connect(readonly=True)
        mark = DurableBuffer.cursor(conn, self.cfg.name, self.stream)
        self.sink.ensure_database()
        version = self.buffer.version
        while not self.stop_event.is_set():
            rows = self.buffer.read(conn, self.stream, mark, self.cfg.batch_max_lines)
            if not rows:
                version = self.buffer.wait_change(version, 0.5)
                continue
            if self.wait_s:
                lines = sum(r.n for r in rows)
                ready_at = rows[0].at_ms / 1000.0 + self.wait_s
                remaining = ready_at - time.time()
                if lines < self.cfg.batch_max_lines and remaining > 0:
                    self.stop_event.wait(min(remaining, self.wait_s))
                    rows = self.buffer.read(conn, self.stream, mark, self.cfg.batch_max_lines)
                    if not rows:        # the size cap took them meanwhile
                        continue
            result = self.deliver(conn, self._lines(rows), top=True)
            if result is None:
                # Failed: back off, then read the batch again, since the size cap may have
                # dropped some of its rows meanwhile.
                continue
            if not result:
                return   # stopping; the batch stays in the buffer
            mark = rows[-1].id
            self.buffer.post_advance(self.cfg.name, self.stream, mark)
        conn.close()

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

    def deliver(self, conn, lines: list[str], top: bool = False) -> bool | None:
        """Write lines until done (written or dead-lettered): True. False when stopping.
        With top=True a failed attempt returns None after the backoff (the caller
        re-reads the batch); parts of a split batch are retried here."""
        name = self.cfg.name
        while not self.stop_event.is_set():
            outcome = self.sink.write("\n".join(lines))
            self.metrics.sink_requests.labels(name, outcome.kind).inc()
            if outcome.kind == sinkmod.OK:
                if self.failures:
                    log.info("sink %s: writing again after %d failed attempts", name, self.failures)
                self.failures = 0
                self.metrics.sink_written.labels(name).inc(len(lines))
                return True
            if outcome.kind in (sinkmod.TOO_LARGE, sinkmod.REJECTED):
                if len(lines) > 1:
                    half = len(lines) // 2
                    return bool(self.deliver(conn, lines[:half]) and self.deliver(conn, lines[half:]))
                log.warning("sink %s refused a line (%s): %s", name, outcome.status, outcome.detail[:200])
                self.buffer.post_dead_letter(SINK_REJECTED, None, lines[0].encode(),
                                             f"{outcome.status}: {outcome.detail[:500]}", now_ms(), name)
                self.metrics.sink_rejected.labels(name).inc()
                return True
            self.failures += 1
            self.metrics.sink_failed.labels(name).inc()
            delay = self._backoff(outcome)
            if self.failures in (1, 10) or self.failures % 100 == 0:
                log.warning("sink %s: write failed (%s %s), attempt %d, retrying in %.2f s",
                            name, outcome.status, outcome.detail[:200], self.failures, delay)
            self.stop_event.wait(delay)
            if top:
                return None if not self.stop_event.is_set() else False
        return False
