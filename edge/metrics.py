"""EdgeMetrics: the edge reports on itself in Prometheus text format (prometheus-client).

Counters rise as the stages work; the buffer and per-sink gauges (depth, bytes, lag) are
read from the buffer database at scrape time by a collector, and the inbox's own counters
(QoS 0 dropped, redelivered) are read from the inbox at scrape time too, so they are
exact and cost nothing between scrapes. Each EdgeMetrics has its own registry (no global
state).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edge import database, deadletters, outbox
from edge.ingest import Inbox
from edge.outbox import Stream
from edge.ratelimit import RATE_LIMITED
from edge.registry import clock_summary, count_by_state
from edge.validate import DECODER_ERROR
from protocols.errors import REASONS

# Reasons only the edge gives (the protocol's are in REASONS).
EDGE_REASONS = (RATE_LIMITED, DECODER_ERROR)

P = "urbansense_edge_"

# `*_created` series double the output and say nothing a scrape needs here.
disable_created_metrics()


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_in = Counter(
            P + "messages_in", "Messages committed, by channel (valid) or 'invalid'", ["channel"], registry=r
        )
        self.invalid = Counter(
            P + "invalid_messages",
            "Messages quarantined in the dead-letter table, by reason",
            ["reason"],
            registry=r,
        )
        for reason in REASONS + EDGE_REASONS:
            self.invalid.labels(reason)
        self.throttled = Counter(
            P + "throttled_messages",
            "Messages a node sent over its rate limit (quarantined as rate_limited), by node",
            ["node"],
            registry=r,
        )
        self.duplicates = Counter(
            P + "duplicate_readings",
            "Readings and events already accepted before (redelivery or replay)",
            registry=r,
        )
        self.readings = Counter(P + "readings", "Raw readings accepted into the buffer", registry=r)
        self.commits = Counter(P + "commits", "Group commits of the buffer", registry=r)
        self.commit_size = Histogram(
            P + "commit_messages",
            "Messages per group commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.dropped_lines = Counter(
            P + "buffer_dropped_lines", "Telemetry lines dropped by the buffer size cap", registry=r
        )
        self.disk_full = Gauge(
            P + "buffer_disk_full",
            "1 while the buffer's disk is full: no new messages are taken (they wait at the broker)",
            registry=r,
        )
        self.disk_full_episodes = Counter(
            P + "buffer_disk_full_episodes", "Times the buffer's disk became full", registry=r
        )
        self.sink_written = Counter(P + "sink_written_lines", "Lines a sink accepted", ["sink"], registry=r)
        self.sink_requests = Counter(
            P + "sink_requests", "Write requests by outcome", ["sink", "outcome"], registry=r
        )
        self.sink_failed = Counter(
            P + "sink_failed_writes", "Write attempts that failed and will be retried", ["sink"], registry=r
        )
        self.sink_up = Gauge(
            P + "sink_up",
            "1 while a sink takes writes, 0 from its first failed write on",
            ["sink"],
            registry=r,
        )
        self.sink_type_conflicts = Counter(
            P + "sink_type_conflict_lines",
            "Lines a sink refused because a field has another type there, by measurement and field",
            ["sink", "measurement", "field"],
            registry=r,
        )
        self.sink_rejected = Counter(
            P + "sink_rejected_lines",
            "Lines a sink refused (4xx), sent to dead letters",
            ["sink"],
            registry=r,
        )
        self.alarms = Counter(P + "alarms_published", "Events republished on alarms/v1/...", registry=r)
        self.receipts = Counter(
            P + "receipts_published",
            "Receipts published to nodes after a commit (one per node per group)",
            registry=r,
        )
        self.ts_collisions = Counter(
            P + "ts_collisions",
            "Readings and events moved off a timestamp another of the node's had taken",
            registry=r,
        )
        self.alertmanager_posts = Counter(
            P + "alertmanager_posts",
            "Posts of alerts to Alertmanager, by outcome (ok, failed: retried, rejected: 4xx)",
            ["outcome"],
            registry=r,
        )
        self.alertmanager_alerts = Counter(
            P + "alertmanager_alerts",
            "Alarm states Alertmanager took, firing (raised) or resolved (cleared); reposts not counted",
            ["state"],
            registry=r,
        )
        self.alertmanager_open = Gauge(
            P + "alertmanager_open_alarms", "Alarms open (raised, not cleared) at this edge", registry=r
        )
        self.alertmanager_undelivered = Gauge(
            P + "alertmanager_undelivered_alarms",
            "Alarm states (raised or cleared) Alertmanager has not taken yet",
            registry=r,
        )
        self._server = None

    # -- hooks the stages call ---------------------------------------------------------
    def committed(
        self,
        messages: int,
        channels: list[str],
        invalid: list[str],
        duplicates: int,
        raw_lines: int,
        throttled: list[str] = (),
    ) -> None:
        self.commits.inc()
        self.commit_size.observe(messages)
        # One inc per label and group: a labelled child's inc takes a lock and a lookup,
        # which per message was a few percent of the edge's time in a backlog.
        for ch, n in collections.Counter(channels).items():
            self.messages_in.labels(ch).inc(n)
        if invalid:
            self.messages_in.labels("invalid").inc(len(invalid))
            for reason, n in collections.Counter(invalid).items():
                self.invalid.labels(reason).inc(n)
        for node, n in collections.Counter(throttled).items():
            self.throttled.labels(node).inc(n)
        if duplicates:
            self.duplicates.inc(duplicates)
        if raw_lines:
            self.readings.inc(raw_lines)

    def dropped(self, lines: int) -> None:
        self.dropped_lines.inc(lines)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def serve(self, host: str, port: int) -> int:
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class InboxCollector(Collector):
    """The inbox's counters, read at scrape time."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    def collect(self):
        yield CounterMetricFamily(
            P + "qos0_dropped_messages",
            "QoS 0 messages (outside the protocol) dropped while the inbox was full",
            value=self._inbox.qos0_dropped,
        )
        yield CounterMetricFamily(
            P + "redelivered_messages",
            "Messages the broker delivered again (MQTT DUP flag)",
            value=self._inbox.redelivered,
        )
        yield CounterMetricFamily(
            P + "receipts_ignored",
            "Receipts (edges' own output) a wide subscription delivered to the edge, acknowledged unread",
            value=self._inbox.receipts_ignored,
        )


class MqttCollector(Collector):
    """Each MQTT session's connection state, read at scrape time."""

    def __init__(self, sessions: list) -> None:
        self._sessions = sessions  # edge.ingest.MqttIngest

    def collect(self):
        connected = GaugeMetricFamily(
            P + "mqtt_connected", "1 while the session is connected to the broker", labels=["session"]
        )
        errors = CounterMetricFamily(
            P + "mqtt_connect_errors", "Failed connection attempts to the broker", labels=["session"]
        )
        last = GaugeMetricFamily(
            P + "mqtt_last_connect_error_timestamp_seconds",
            "When the last connection attempt failed (0: never), with its error",
            labels=["session", "error"],
        )
        quiet = GaugeMetricFamily(
            P + "mqtt_seconds_since_last_message",
            "Seconds since the session's last message (or since the edge started)",
            labels=["session"],
        )
        now = time.monotonic()
        for s in self._sessions:
            connected.add_metric([s.client_id], 1 if s.connected.is_set() else 0)
            errors.add_metric([s.client_id], s.connect_errors)
            last.add_metric([s.client_id, s.last_error[:120]], s.last_error_at)
            quiet.add_metric([s.client_id], max(0.0, now - s.last_message))
        yield connected
        yield errors
        yield last
        yield quiet


class BufferCollector(Collector):
    """Gauges read from the buffer database at scrape time."""

    def __init__(
        self, connect: Callable, sinks: dict[str, Iterable[Stream]], path: Path | None = None
    ) -> None:
        self._connect = connect
        self._path = path
        self._sinks = {k: tuple(v) for k, v in sinks.items()}
        self._lock = threading.Lock()
        self._conn = None

    def describe(self):
        return []

    def collect(self):
        with self._lock:
            if self._conn is None:
                self._conn = self._connect(readonly=True)
            conn = self._conn
            now = time.time() * 1000
            rows = GaugeMetricFamily(
                P + "buffer_rows", "Rows in the buffer outbox, by stream", labels=["stream"]
            )
            lines = GaugeMetricFamily(
                P + "buffer_lines", "Lines in the buffer outbox, by stream", labels=["stream"]
            )
            for stream in Stream:
                n, nl = outbox.pending(conn, stream, 0)
                rows.add_metric([stream.label], n)
                lines.add_metric([stream.label], nl)
            yield rows
            yield lines
            yield GaugeMetricFamily(
                P + "buffer_bytes", "Bytes of the buffer database in use", value=database.used_bytes(conn)
            )
            if self._path is not None:
                yield GaugeMetricFamily(
                    P + "buffer_disk_bytes",
                    "What the buffer takes on disk: database file and write-ahead log (what max_bytes bounds)",
                    value=database.file_bytes(self._path),
                )
                disk = os.statvfs(self._path.parent)
                yield GaugeMetricFamily(
                    P + "buffer_disk_free_bytes",
                    "Free bytes on the buffer's file system (for unprivileged processes)",
                    value=disk.f_bavail * disk.f_frsize,
                )
            yield GaugeMetricFamily(
                P + "dead_letters", "Rows in the dead-letter table", value=deadletters.count(conn)
            )
            lag = GaugeMetricFamily(
                P + "sink_lag_seconds",
                "Age of the oldest line a sink has not yet written (0 when caught up)",
                labels=["sink"],
            )
            pending = GaugeMetricFamily(
                P + "sink_pending_lines", "Lines a sink has not yet written", labels=["sink"]
            )
            for sink, streams in self._sinks.items():
                waiting, oldest = outbox.backlog(conn, sink, streams)
                lag.add_metric([sink], 0.0 if oldest is None else max(0.0, (now - oldest) / 1000))
                pending.add_metric([sink], waiting)
            yield lag
            yield pending
            nodes = GaugeMetricFamily(P + "nodes", "Nodes in the registry, by state", labels=["state"])
            for state, count in count_by_state(conn).items():
                nodes.add_metric([state], count)
            yield nodes
            # Node clocks: two series whatever the number of nodes.
            bad, worst_ms = clock_summary(conn)
            yield GaugeMetricFamily(
                P + "nodes_clock_bad", "Nodes whose clock is off by more than [clock] max_offset_s", value=bad
            )
            yield GaugeMetricFamily(
                P + "clock_offset_max_seconds",
                "The largest clock offset estimate of any node, in seconds (absolute value)",
                value=worst_ms / 1000,
            )
