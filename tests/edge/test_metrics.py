"""The metrics an edge exposes, by name and type, and the inbox's counters read at scrape
time (no copy of them is kept anywhere else)."""

from __future__ import annotations

from prometheus_client import generate_latest

from edge.buffer import DurableBuffer
from edge.ingest import Inbox, Incoming
from edge.metrics import BufferCollector, EdgeMetrics, InboxCollector
from edge.outbox import Stream

# Dashboards and alerts are built on these: (name, type).
EXPOSED = [
    ("urbansense_edge_messages_in_total", "counter"),
    ("urbansense_edge_invalid_messages_total", "counter"),
    ("urbansense_edge_throttled_messages_total", "counter"),
    ("urbansense_edge_duplicate_readings_total", "counter"),
    ("urbansense_edge_readings_total", "counter"),
    ("urbansense_edge_commits_total", "counter"),
    ("urbansense_edge_commit_messages", "histogram"),
    ("urbansense_edge_buffer_dropped_lines_total", "counter"),
    ("urbansense_edge_sink_written_lines_total", "counter"),
    ("urbansense_edge_sink_requests_total", "counter"),
    ("urbansense_edge_sink_failed_writes_total", "counter"),
    ("urbansense_edge_sink_rejected_lines_total", "counter"),
    ("urbansense_edge_alarms_published_total", "counter"),
    ("urbansense_edge_qos0_dropped_messages_total", "counter"),
    ("urbansense_edge_redelivered_messages_total", "counter"),
    ("urbansense_edge_buffer_rows", "gauge"),
    ("urbansense_edge_buffer_lines", "gauge"),
    ("urbansense_edge_buffer_bytes", "gauge"),
    ("urbansense_edge_dead_letters", "gauge"),
    ("urbansense_edge_sink_lag_seconds", "gauge"),
    ("urbansense_edge_sink_pending_lines", "gauge"),
    ("urbansense_edge_nodes", "gauge"),
    ("urbansense_edge_receipts_published_total", "counter"),
    ("urbansense_edge_ts_collisions_total", "counter"),
    ("urbansense_edge_receipts_ignored_total", "counter"),
    ("urbansense_edge_nodes_clock_bad", "gauge"),
    ("urbansense_edge_clock_offset_max_seconds", "gauge"),
]


def message(i: int, qos: int) -> Incoming:
    return Incoming(i, qos, "city/v1/xuhui/caohejing/q-0001/telemetry", b"{}", 0, 0, None)


def test_every_metric_keeps_its_name_and_type(tmp_path):
    metrics = EdgeMetrics()
    metrics.add_collector(InboxCollector(Inbox()))
    buf = DurableBuffer(tmp_path / "buffer.db")
    metrics.add_collector(BufferCollector(buf.connect, {"district": (Stream.RAW, Stream.HEALTH)}))
    text = generate_latest(metrics.registry).decode()
    types = dict(line.split(" ")[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    assert {name: types.get(name) for name, _ in EXPOSED} == dict(EXPOSED)
    assert 'urbansense_edge_buffer_rows{stream="alarm"} 0.0' in text
    assert 'urbansense_edge_sink_pending_lines{sink="district"} 0.0' in text


def test_inbox_counters_are_read_at_scrape_time():
    inbox = Inbox(qos0_max_waiting=2)
    metrics = EdgeMetrics()
    metrics.add_collector(InboxCollector(inbox))
    sample = metrics.registry.get_sample_value
    assert sample("urbansense_edge_qos0_dropped_messages_total") == 0
    for i in range(5):
        inbox.put(message(i, 0))
    inbox.note_redelivered()
    inbox.note_receipt_ignored()
    assert sample("urbansense_edge_qos0_dropped_messages_total") == 3
    assert sample("urbansense_edge_redelivered_messages_total") == 1
    assert sample("urbansense_edge_receipts_ignored_total") == 1
    inbox.take(10, 0.1)
    inbox.put(message(9, 0))
    assert sample("urbansense_edge_qos0_dropped_messages_total") == 3
