"""Nothing lost between the node and the database, at the edge: receipts, timestamps of
clockless readings, node clocks and loss accounting (protocols/SPEC.md 3.2, 6.4, 7.1).

A real `urbansense edge run` between the real Mosquitto and the real InfluxDB 1.6; the
nodes are played by paho clients publishing protocol messages, and read their receipts
with the node's own decoder (codec.decode_receipt)."""

from __future__ import annotations

import subprocess

import pytest

from protocols import codec
from tests.support.cli import URBANSENSE
from tests.support.edge_process import EdgeProcess, v1_sink, write_config
from tests.support.influx_points import assert_exactly
from tests.support.metrics import metric
from tests.support.publisher import Publisher
from tests.support.readings import counted_readings, now_ms
from tests.support.receipts import ReceiptWatcher
from tests.support.site import topic
from tests.support.waiting import wait_for

RAW_DB = "district_receipts"
MINE = ("rcpt-", "clk-", "loss-")  # the module's nodes: other tests' edges share the broker


def points(influx, sql: str, db: str) -> list[dict]:
    out = []
    for s in influx.query(sql, db=db):
        for v in s["values"]:
            out.append(dict(zip(s["columns"], v)))
    return out


@pytest.fixture(scope="module")
def site(_mosquitto_session, _influxdb_session, tmp_path_factory):
    mq, influx = _mosquitto_session, _influxdb_session
    folder = tmp_path_factory.mktemp("edge-receipts")
    config = write_config(
        folder,
        mqtt_port=mq.port,
        # One session per set-up: the runner may set this module up twice on one broker.
        client_id=folder.name,
        metrics=True,
        sinks=[v1_sink("district", influx, RAW_DB)],
        extra={"health": {"write_every_s": 0.5, "check_every_s": 0.5}},
    )
    edge = EdgeProcess(config).start()

    def committed(node: str, receipt) -> None:
        # Runs as each receipt arrives: what it covers is in the buffer already. (Other
        # tests' edges on the session's broker confirm their own nodes.)
        if not node.startswith(MINE):
            return
        have = set(edge.query("SELECT boot, seq FROM seen WHERE node=?", (node,)))
        missing = [
            (b, s) for b, first, last in receipt[1] for s in range(first, last + 1) if (b, s) not in have
        ]
        assert not missing, f"a receipt before the commit of {missing[:5]}"

    # Live receipts only: the test runner may set this module up twice on one broker (its
    # tests split across other modules' ones), and the first edge's receipts stay retained.
    watcher = ReceiptWatcher(mq.port, "receipts-site-watcher", check=committed, retained=False)
    pub = Publisher(mq.port, "receipts-publisher")
    yield edge, pub, watcher, influx
    pub.close()
    watcher.close()
    assert edge.stop() == 0, edge.log_tail()


def test_receipts_confirm_what_is_committed_with_the_right_ranges(site):
    edge, pub, watcher, influx = site
    node = "rcpt-0001"
    t = now_ms() - 60_000

    def reading(seq: int) -> tuple[str, bytes]:
        return topic(node, "telemetry"), codec.encode_reading(
            node, "air", 1, seq, {"pm25": float(seq)}, ts=t + seq
        )

    pub.publish_all([reading(s) for s in range(10)])
    assert watcher.wait_covering(node, [(1, s) for s in range(10)])[1] == [[1, 0, 9]]
    # 11, 13, ... lost on the way: every reading after that is a range of its own.
    pub.publish_all([reading(s) for s in range(12, 30, 2)])
    watcher.wait_covering(node, [(1, 28)])
    pub.publish_all([reading(30)])
    ts, got = watcher.wait_covering(node, [(1, 30)])
    assert got == [[1, s, s] for s in range(16, 32, 2)]  # the newest 8 of 11 ranges
    assert ts >= t
    # An old reading resent after newer ones: its range is listed, then the newest 7.
    seen = len(watcher.receipts(node))
    pub.publish_all([reading(2)])
    assert watcher.wait_covering(node, [(1, 2)], after=seen)[1] == [[1, 0, 9]] + [
        [1, s, s] for s in range(18, 32, 2)
    ]
    # A duplicate resend of the newest reading is confirmed again.
    seen = len(watcher.receipts(node))
    pub.publish_all([reading(30)])
    watcher.wait_covering(node, [(1, 30)], after=seen)
    assert not watcher.problems, watcher.problems
    # Stored once each, 20 readings, whatever the resends.
    wait_for(
        lambda: len(points(influx, f"SELECT pm25 FROM air WHERE node='{node}'", RAW_DB)) == 20,
        what="20 points",
    )
    assert edge.query(
        "SELECT boot, first_seq, last_seq FROM committed WHERE node=? ORDER BY first_seq", (node,)
    ) == [(1, 0, 9)] + [(1, s, s) for s in range(12, 32, 2)]
    text = edge.metrics_text()
    assert metric(text, "urbansense_edge_receipts_published_total") >= len(watcher.receipts(node))
    assert metric(text, "urbansense_edge_duplicate_readings_total") >= 2


def test_a_node_clock_an_hour_behind_is_flagged(site):
    edge, pub, watcher, influx = site
    hour = 3_600_000
    msgs = []
    for node, offset in (("clk-0001", -hour), ("clk-0002", 0)):
        t = now_ms() + offset
        msgs.append((topic(node, "status"), codec.encode_status(node, "parking", 1, 1, "online", ts=t)))
        msgs += [
            (
                topic(node, "telemetry"),
                codec.encode_reading(node, "parking", 1, s, {"occupied": True}, ts=t + s),
            )
            for s in range(2)
        ]
    pub.publish_all(msgs)
    wait_for(
        lambda: edge.query("SELECT clock_bad FROM nodes WHERE node='clk-0001'") == [(1,)], what="the flag"
    )
    nodes = edge.nodes()
    behind, good = nodes["clk-0001"], nodes["clk-0002"]
    # ts - arrival at the largest: the node's offset less the quickest message's delay.
    assert -hour - 60_000 < behind["clock_offset_ms"] <= -hour and behind["clock_bad"] is True
    assert -60_000 < good["clock_offset_ms"] <= 0 and good["clock_bad"] is False
    health = wait_for(
        lambda: points(
            influx, "SELECT clock_bad, clock_offset_ms FROM node_health WHERE node='clk-0001'", RAW_DB
        ),
        what="node_health of clk-0001",
    )
    assert health[-1]["clock_bad"] is True and health[-1]["clock_offset_ms"] <= -hour
    text = edge.metrics_text()
    # At least this node (retained births of other tests' nodes reach this edge too).
    assert metric(text, "urbansense_edge_nodes_clock_bad") >= 1
    assert metric(text, "urbansense_edge_clock_offset_max_seconds") >= -behind["clock_offset_ms"] / 1000
    assert "node clk-0001: clock off by -3600" in edge.log_text()
    table = subprocess.run(
        [URBANSENSE, "nodes", "--config", str(edge.config)], capture_output=True, text=True, timeout=60
    )
    assert table.returncode == 0 and "BAD" in table.stdout


def test_loss_at_the_start_of_a_boot_counts_from_the_birth_first_seq(site):
    edge, pub, watcher, influx = site
    t = now_ms() - 10_000
    msgs = []
    for node, first_seq in (("loss-0001", 0), ("loss-0002", None)):
        # Seqs 0..4 of boot 2 were taken and lost before the edge heard of the node
        # (a broker that lost them, say); its birth says nothing below 0 was confirmed.
        birth = codec.encode_status(node, "leak", 2, 4, "online", ts=t, first_seq=first_seq, dropped=3)
        msgs.append((topic(node, "status"), birth))
        msgs += [
            (topic(node, "telemetry"), codec.encode_reading(node, "leak", 2, s, {"wet": False}, ts=t + s))
            for s in range(5, 10)
        ]
    pub.publish_all(msgs)
    watcher.wait_covering("loss-0001", [(2, s) for s in range(5, 10)])
    watcher.wait_covering("loss-0002", [(2, s) for s in range(5, 10)])
    nodes = edge.nodes()
    assert (nodes["loss-0001"]["seq_gaps"], nodes["loss-0001"]["dropped"]) == (5, 3)
    assert (nodes["loss-0002"]["seq_gaps"], nodes["loss-0002"]["dropped"]) == (
        0,
        3,
    )  # a birth without first_seq
    health = wait_for(
        lambda: [
            p
            for p in points(
                influx, "SELECT seq_gaps, dropped FROM node_health WHERE node='loss-0001'", RAW_DB
            )
            if p["seq_gaps"] == 5
        ],
        what="node_health of loss-0001 with its gaps",
    )
    assert health[-1]["dropped"] == 3
    # The lost readings arrive after all (the node still held them): the gap closes.
    pub.publish_all(
        [
            (
                topic("loss-0001", "telemetry"),
                codec.encode_reading("loss-0001", "leak", 2, s, {"wet": False}, ts=t + s),
            )
            for s in range(5)
        ]
    )
    watcher.wait_covering("loss-0001", [(2, s) for s in range(10)])
    wait_for(lambda: edge.nodes()["loss-0001"]["seq_gaps"] == 0, what="the gap closed")


def test_an_edge_killed_between_commit_and_receipt_confirms_the_resend(
    mosquitto_factory, influxdb, tmp_path, edges
):
    """An edge killed after a COMMIT and before its receipts leaves readings committed and
    unconfirmed. That state is made exactly here by an edge with receipts off, killed
    with SIGKILL; it restarts with receipts on, the nodes send everything again (with new
    age_ms: stored twice, a reading would show as two points), and the edge confirms it
    all without storing anything twice. (A broker of its own: the module's edge serves
    the same zone.)"""
    mosquitto = mosquitto_factory()
    db = "receipt_kill"
    settings = dict(
        mqtt_port=mosquitto.port, client_id="edge-receipt-kill", sinks=[v1_sink("district", influxdb, db)]
    )
    config = write_config(tmp_path, **settings, extra={"receipts": {"enabled": False}})
    edge = edges(config).start()
    watcher = ReceiptWatcher(mosquitto.port, "receipt-kill-watcher")
    pub = Publisher(mosquitto.port, "receipt-kill-publisher")
    n, nodes = 400, 4
    try:
        pub.publish_all(counted_readings(n, nodes=nodes, prefix="rk"))
        wait_for(lambda: edge.query("SELECT count(*) FROM seen")[0][0] == n, what="all committed")
        edge.kill()
        assert not any(watcher.receipts(f"rk-{i:04d}") for i in range(nodes))
        write_config(tmp_path, **settings)
        edge.start()
        pub.publish_all(counted_readings(n, nodes=nodes, prefix="rk", min_age_ms=5_000))
        for i in range(nodes):
            watcher.wait_covering(f"rk-{i:04d}", [(1, s) for s in range(n // nodes)])
        assert_exactly(influxdb, db, n)
        assert edge.query("SELECT count(*) FROM seen")[0][0] == n
    finally:
        pub.close()
        watcher.close()


def test_clockless_readings_that_waited_at_the_broker_are_all_stored(
    mosquitto_factory, influxdb, tmp_path, edges
):
    """The edge is away; a clockless node publishes a reading at a time, each with the
    small age_ms it had when published, and another replays its queue in one batch of
    readings sampled together. When the edge is back they arrive in one burst: stamped
    arrival - age_ms, many share a millisecond. Every reading is stored, at a time of its
    own, marked time_estimated, and the moves are counted."""
    mosquitto = mosquitto_factory()
    db = "receipt_collide"
    config = write_config(
        tmp_path,
        mqtt_port=mosquitto.port,
        client_id="edge-collide",
        metrics=True,
        sinks=[v1_sink("district", influxdb, db)],
    )
    edge = edges(config).start()
    edge.stop()  # its session stays at the broker, which keeps what comes for it
    singles = [
        (
            topic("c-0001", "telemetry"),
            codec.encode_reading("c-0001", "leak", 1, s, {"conductance": float(s)}, age_ms=5),
        )
        for s in range(13)
    ]
    items = [codec.reading_item(1, s, {"conductance": float(s)}, age_ms=250) for s in range(8)]
    batch = (topic("c-0002", "telemetry"), codec.encode_batch("c-0002", "leak", items))
    pub = Publisher(mosquitto.port, "collide-publisher")
    try:
        pub.publish_all([*singles, batch])
    finally:
        pub.close()
    edge.start()
    stored = {}
    for node, count in (("c-0001", 13), ("c-0002", 8)):
        sql = f"SELECT conductance, time_estimated FROM leak WHERE node='{node}'"
        wait_for(lambda q=sql, c=count: len(points(influxdb, q, db)) == c, what=f"{node}'s {count} points")
        stored[node] = points(influxdb, sql, db)
        assert sorted(p["conductance"] for p in stored[node]) == list(range(count))
        assert all(p["time_estimated"] is True for p in stored[node])
        assert len({p["time"] for p in stored[node]}) == count
    # The batch: one arrival, one age, so one time asked for 8 times; the later ones in
    # (boot, seq) order moved 1 ms each.
    batch_points = sorted(stored["c-0002"], key=lambda p: p["conductance"])
    assert [p["time"] - batch_points[0]["time"] for p in batch_points] == list(range(8))
    moved = {r[0]: r[1] for r in edge.query("SELECT node, ts_collisions FROM nodes WHERE node LIKE 'c-%'")}
    assert moved["c-0002"] == 7
    assert metric(edge.metrics_text(), "urbansense_edge_ts_collisions_total") == moved["c-0001"] + 7
    assert edge.nodes()["c-0002"]["ts_collisions"] == 7
