"""One edge (a real `urbansense edge run` subprocess) between the real Mosquitto and the real
InfluxDB 1.6: readings, dead letters, deduplication, events and alarms, rollups, the node
registry and the metrics endpoint."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from protocols import codec
from tests.support.cli import URBANSENSE
from tests.support.edge_process import EdgeProcess, v1_sink, write_config
from tests.support.metrics import metric
from tests.support.publisher import Publisher
from tests.support.readings import now_ms
from tests.support.site import DISTRICT, ZONE, topic
from tests.support.waiting import wait_for

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "vectors"
RAW_DB = "district_pipeline"
CITY_DB = "city_pipeline"


@pytest.fixture(scope="module")
def site(_mosquitto_session, _influxdb_session, tmp_path_factory):
    mq, influx = _mosquitto_session, _influxdb_session
    folder = tmp_path_factory.mktemp("edge-pipeline")
    config = write_config(
        folder,
        mqtt_port=mq.port,
        # One session per set-up: the runner may set this module up twice on one broker.
        client_id=folder.name,
        metrics=True,
        # Every topic under city/ and town/, so that even malformed topics reach the edge.
        mqtt_extra={"topics": ["city/#", "town/#"]},
        sinks=[v1_sink("district", influx, RAW_DB), v1_sink("city", influx, CITY_DB, data="rollup")],
        extra={"rollup": {"delay_s": 0.5}, "health": {"write_every_s": 0.5, "check_every_s": 0.5}},
    )
    edge = EdgeProcess(config).start()
    pub = Publisher(mq.port, "pipeline-publisher")
    yield edge, pub, influx, mq
    pub.close()
    code = edge.stop()
    assert code == 0, edge.log_tail()


def points(influx, sql: str, db: str = RAW_DB) -> list[dict]:
    series = influx.query(sql, db=db)
    out = []
    for s in series:
        for v in s["values"]:
            out.append({**s.get("tags", {}), **dict(zip(s["columns"], v))})
    return out


def test_readings_are_stored_with_their_own_time(site):
    edge, pub, influx, _ = site
    t0 = now_ms() - 30_000
    msgs = [
        (
            topic("a-0101", "telemetry"),
            codec.encode_reading("a-0101", "air", 1, i, {"pm25": 10.0 + i, "battery_v": 3.6}, ts=t0 + i),
        )
        for i in range(20)
    ]
    msgs.append(
        (
            topic("l-0101", "telemetry"),
            codec.encode_reading("l-0101", "leak", 2, 5, {"wet": True}, age_ms=90_000),
        )
    )
    before = now_ms()
    pub.publish_all(msgs)
    wait_for(
        lambda: len(points(influx, "SELECT pm25 FROM air WHERE node='a-0101'")) == 20, what="20 air points"
    )
    got = points(influx, "SELECT pm25 FROM air WHERE node='a-0101'")
    assert [p["time"] for p in got] == [t0 + i for i in range(20)]
    assert [p["pm25"] for p in got] == [10.0 + i for i in range(20)]
    leak = wait_for(lambda: points(influx, "SELECT wet FROM leak WHERE node='l-0101'"), what="leak")
    # age_ms: the edge stamps arrival - age_ms, once
    assert before - 90_000 - 5_000 <= leak[0]["time"] <= now_ms() - 90_000
    assert leak[0]["wet"] is True


def test_redelivery_and_age_ms_replay_are_written_once(site):
    edge, pub, influx, _ = site
    node = "p-0102"
    first = codec.encode_reading(node, "parking", 4, 7, {"occupied": True}, age_ms=60_000)
    pub.publish_all([(topic(node, "telemetry"), first)])
    wait_for(lambda: points(influx, f"SELECT occupied FROM parking WHERE node='{node}'"), what="first")
    time.sleep(0.3)
    # the node replays the same reading later, with a new age_ms, alone and in a batch
    again = codec.encode_reading(node, "parking", 4, 7, {"occupied": True}, age_ms=30_000)
    batch = codec.encode_batch(
        node,
        "parking",
        [
            codec.reading_item(4, 7, {"occupied": True}, age_ms=20_000),
            codec.reading_item(4, 8, {"occupied": False}, age_ms=10_000),
        ],
    )
    pub.publish_all([(topic(node, "telemetry"), again), (topic(node, "telemetry"), batch)])
    wait_for(
        lambda: len(points(influx, f"SELECT occupied FROM parking WHERE node='{node}'")) >= 2, what="seq 8"
    )
    time.sleep(0.5)
    got = points(influx, f"SELECT occupied FROM parking WHERE node='{node}'")
    assert [p["occupied"] for p in got] == [True, False]
    dup = edge.query("SELECT count(*) FROM seen WHERE node=?", (node,))[0][0]
    assert dup == 2


def _shifted(payload: bytes, delta: int) -> bytes:
    """Move a vector's `ts` values by delta ms (same digit count, so the size is kept):
    the vectors are written against a fixed receiver clock, the edge uses the real one."""

    def shift(m):
        return b'"ts":' + str(int(m.group(1)) + delta).encode()

    return re.sub(rb'"ts":(1[0-9]{12})\b', shift, payload)


def test_every_invalid_vector_ends_in_dead_letters_with_its_reason(site):
    edge, pub, influx, _ = site
    cases = json.loads((VECTORS / "cases.json").read_text())
    # ts-future is 1 ms beyond the 5-minute limit at the vectors' clock: 10 s of slack keeps
    # it beyond the limit at the moment the edge receives it.
    delta = now_ms() - cases["now_ms"] + 10_000
    expected = []
    for name, case in sorted(cases["cases"].items()):
        if "reason" not in case or "decoder" in case:
            continue  # vectors of the node's own decoders (commands, receipts)
        if case["topic"].endswith("/receipt"):
            continue  # what edges publish: the edge takes it for no node's message (below)
        payload = _shifted((VECTORS / "payloads" / name).read_bytes(), delta)
        expected.append((case["reason"], case["topic"], payload, name))
    before = edge.query("SELECT count(*) FROM dead_letters")[0][0]
    pub.publish_all([(t, p) for _, t, p, _ in expected])
    wait_for(
        lambda: edge.query("SELECT count(*) FROM dead_letters")[0][0] >= before + len(expected),
        what=f"{len(expected)} dead letters",
    )
    rows = edge.query("SELECT reason, topic, payload FROM dead_letters WHERE id > ? ORDER BY id", (before,))
    got = sorted((r[1], bytes(r[2]), r[0]) for r in rows)
    want = sorted((t, p, reason) for reason, t, p, _ in expected)
    assert got == want
    assert edge.running()
    metrics = edge.metrics_text()
    assert 'urbansense_edge_invalid_messages_total{reason="bad_json"}' in metrics


def test_kind_mismatch_is_a_dead_letter(site):
    edge, pub, influx, _ = site
    node = "x-0103"
    ok = codec.encode_reading(node, "leak", 1, 1, {"wet": False}, ts=now_ms() - 1000)
    bad = codec.encode_reading(node, "air", 1, 2, {"pm25": 3.0}, ts=now_ms() - 500)
    pub.publish_all([(topic(node, "telemetry"), ok)])
    wait_for(lambda: edge.query("SELECT kind FROM nodes WHERE node=?", (node,)), what="registry")
    pub.publish_all([(topic(node, "telemetry"), bad)])
    wait_for(
        lambda: edge.query("SELECT reason FROM dead_letters WHERE topic=?", (topic(node, "telemetry"),)),
        what="kind_mismatch",
    )
    assert edge.query("SELECT reason FROM dead_letters WHERE topic=?", (topic(node, "telemetry"),)) == [
        ("kind_mismatch",)
    ]


def test_event_is_written_and_republished_on_the_alarm_topic(site):
    edge, pub, influx, mq = site
    got: list[mqtt.MQTTMessage] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alarm-watcher")
    sub.on_message = lambda c, u, m: got.append(m)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", mq.port)
    sub.subscribe("alarms/v1/#", qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        ts = now_ms() - 100
        pub.publish_all(
            [
                (
                    topic("m-0104", "event"),
                    codec.encode_event(
                        "m-0104",
                        "manhole",
                        7,
                        100,
                        "cover-open",
                        True,
                        value=37.5,
                        ts=ts,
                        fields={"tilt_deg": 37.5},
                    ),
                )
            ]
        )
        wait_for(lambda: got, what="alarm")
        msg = got[0]
        assert msg.topic == f"alarms/v1/{DISTRICT}/{ZONE}/m-0104/cover-open"
        body = json.loads(msg.payload)
        assert body["event"] == "cover-open" and body["severity"] == "critical" and body["ts"] == ts
        assert body["node"] == "m-0104" and body["fields"] == {"tilt_deg": 37.5}
        for db in (RAW_DB, CITY_DB):
            rows = wait_for(
                lambda db=db: points(influx, "SELECT * FROM events WHERE node='m-0104'", db),
                what=f"event in {db}",
            )
            assert rows[0]["time"] == ts and rows[0]["state"] is True and rows[0]["value"] == 37.5
            assert rows[0]["severity"] == "critical" and rows[0]["kind"] == "manhole"
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_rollups_reach_the_city_and_are_rewritten_by_late_readings(site):
    edge, pub, influx, _ = site
    node = "a-0105"
    minute = (now_ms() // 60000 - 3) * 60000
    msgs = [
        (
            topic(node, "telemetry"),
            codec.encode_reading(node, "air", 1, i, {"pm25": float(10 * (i + 1))}, ts=minute + i * 1000),
        )
        for i in range(3)
    ]
    pub.publish_all(msgs)
    sql = f"SELECT pm25_mean, pm25_count, pm25_min, pm25_max FROM air_1m WHERE node='{node}'"
    # The three may be committed in two groups, the minute rolled up after the first and
    # rewritten after the second: the rollup of all three is what is waited for.
    wait_for(lambda: [r["pm25_count"] for r in points(influx, sql, CITY_DB)] == [3.0], what="rollup")
    assert points(influx, sql, CITY_DB) == [
        {"time": minute, "pm25_mean": 20.0, "pm25_count": 3.0, "pm25_min": 10.0, "pm25_max": 30.0}
    ]
    # a late reading of the same minute rewrites the point from the whole minute
    pub.publish_all(
        [
            (
                topic(node, "telemetry"),
                codec.encode_reading(node, "air", 1, 3, {"pm25": 60.0}, ts=minute + 59_000),
            )
        ]
    )
    wait_for(lambda: points(influx, sql, CITY_DB)[0]["pm25_count"] == 4.0, what="rewritten rollup")
    assert points(influx, sql, CITY_DB) == [
        {"time": minute, "pm25_mean": 30.0, "pm25_count": 4.0, "pm25_min": 10.0, "pm25_max": 60.0}
    ]
    # raw readings never reach the city database
    assert points(influx, f"SELECT * FROM air WHERE node='{node}'", CITY_DB) == []


def test_node_registry_health_and_the_nodes_command(site):
    edge, pub, influx, _ = site
    node = "p-0106"
    ts = now_ms() - 10_000
    msgs = [
        (
            topic(node, "status"),
            codec.encode_status(
                node, "parking", 3, 0, "online", fw="1.4.2", interval_s=60, reset="power", ts=ts
            ),
        )
    ]
    for seq in (0, 1, 2, 5, 6):  # 3 and 4 lost on the way
        msgs.append(
            (
                topic(node, "telemetry"),
                codec.encode_reading(
                    node, "parking", 3, seq, {"occupied": True, "battery_v": 3.4, "rssi": -80.0}, ts=ts + seq
                ),
            )
        )
    pub.publish_all(msgs)
    wait_for(
        lambda: edge.query("SELECT seq_gaps FROM nodes WHERE node=?", (node,)) == [(2,)], what="seq gaps"
    )
    row = edge.nodes()[node]
    assert row["online"] is True and row["fw"] == "1.4.2" and row["battery_v"] == 3.4
    assert row["rssi"] == -80.0 and row["seq_gaps"] == 2 and row["boot"] == 3 and row["kind"] == "parking"
    table = subprocess.run(
        [URBANSENSE, "nodes", "--config", str(edge.config)], capture_output=True, text=True, timeout=60
    )
    assert table.returncode == 0 and node in table.stdout
    # the last will: offline, and a node_health point says so
    pub.publish_all([(topic(node, "status"), codec.encode_status(node, "parking", 3, 6, "offline"))])
    wait_for(lambda: edge.query("SELECT online FROM nodes WHERE node=?", (node,)) == [(0,)], what="offline")
    health = wait_for(
        lambda: [
            p
            for p in points(influx, f"SELECT * FROM node_health WHERE node='{node}'")
            if p["online"] is False
        ],
        what="offline health point",
    )
    assert health[-1]["fw"] == "1.4.2" and health[-1]["seq_gaps"] == 2.0
    # the gap filled late: a replay of 3 and 4 brings seq_gaps back to 0
    pub.publish_all(
        [
            (
                topic(node, "telemetry"),
                codec.encode_batch(
                    node,
                    "parking",
                    [
                        codec.reading_item(3, 3, {"occupied": False}, ts=ts + 3),
                        codec.reading_item(3, 4, {"occupied": False}, ts=ts + 4),
                    ],
                ),
            )
        ]
    )
    wait_for(
        lambda: edge.query("SELECT seq_gaps FROM nodes WHERE node=?", (node,)) == [(0,)], what="gap filled"
    )


def test_silent_node_goes_offline(site):
    edge, pub, influx, _ = site
    node = "l-0107"
    # interval 5 s (the shortest allowed): offline after 15 s of silence
    pub.publish_all(
        [
            (
                topic(node, "status"),
                codec.encode_status(node, "leak", 1, 0, "online", interval_s=5, ts=now_ms()),
            )
        ]
    )
    wait_for(lambda: edge.query("SELECT online FROM nodes WHERE node=?", (node,)) == [(1,)], what="online")
    wait_for(
        lambda: edge.query("SELECT online FROM nodes WHERE node=?", (node,)) == [(0,)],
        timeout=30,
        what="offline after silence",
    )


def test_metrics_endpoint(site):
    edge, pub, influx, _ = site
    # A sink's counters appear with its first write: one reading of this test's own, since
    # the tests that wrote before may have run on another worker.
    node = "a-0199"
    pub.publish_all(
        [(topic(node, "telemetry"), codec.encode_reading(node, "air", 1, 1, {"pm25": 1.0}, ts=now_ms()))]
    )
    wait_for(
        lambda: metric(edge.metrics_text(), "urbansense_edge_sink_written_lines_total", 'sink="district"'),
        what="a line written by the district sink",
    )
    text = edge.metrics_text()
    for name in (
        "urbansense_edge_messages_in_total",
        "urbansense_edge_invalid_messages_total",
        "urbansense_edge_buffer_rows",
        "urbansense_edge_buffer_bytes",
        'urbansense_edge_sink_written_lines_total{sink="district"}',
        'urbansense_edge_sink_lag_seconds{sink="city"}',
        "urbansense_edge_sink_failed_writes_total",
    ):
        assert name in text, name
    written = float(re.search(r'sink_written_lines_total\{sink="district"\} (\S+)', text).group(1))
    assert written > 0


def test_the_edge_takes_its_own_receipts_for_no_node_message(site):
    """Subscribed to city/#, the edge gets the receipts it publishes: acknowledged and
    counted, never a dead letter."""
    edge, pub, influx, _ = site
    node = "p-0107"
    pub.publish_all(
        [
            (
                topic(node, "telemetry"),
                codec.encode_reading(node, "parking", 1, 0, {"occupied": True}, ts=now_ms()),
            )
        ]
    )
    wait_for(
        lambda: (metric(edge.metrics_text(), "urbansense_edge_receipts_ignored_total") or 0) >= 1,
        what="the edge's own receipt back",
    )
    assert edge.query("SELECT count(*) FROM dead_letters WHERE topic LIKE '%/receipt'") == [(0,)]
