"""Sinks against real servers: the v2 API through influxdb-client (VictoriaMetrics stands in
for an /api/v2/write endpoint), a 413 from InfluxDB 1.6 splitting batches, and lines the
server refuses (400) going to the dead-letter table while the rest of the batch is written."""

from __future__ import annotations

import re

from edge.config import SinkConfig
from edge.sinks import InfluxV1Sink, classify, retry_after
from hil.services import InfluxDBServer
from protocols import codec
from tests.support.edge_process import v1_sink, write_config
from tests.support.influx_points import uptimes, write_lines
from tests.support.metrics import metric
from tests.support.publisher import Publisher
from tests.support.readings import counted_readings, now_ms
from tests.support.site import topic
from tests.support.waiting import wait_for


def test_v2_sink_writes_through_influxdb_client(mosquitto, victoria, tmp_path, edges):
    sink = {
        "name": "city",
        "url": victoria.url,
        "api": "v2",
        "bucket": "city",
        "org": "ops",
        "token": "not-checked",
        "data": "raw",
        "batch_wait_ms": 20,
    }
    config = write_config(tmp_path, mqtt_port=mosquitto.port, client_id="edge-v2", sinks=[sink])
    edges(config).start()
    base = now_ms() - 20_000  # VictoriaMetrics drops points dated in the future
    n = 200
    pub = Publisher(mosquitto.port, "v2-publisher")
    try:
        pub.publish_all(
            [
                (
                    topic("v-0001", "telemetry"),
                    codec.encode_reading("v-0001", "air", 1, i, {"pm25": float(i)}, ts=base + i * 10),
                )
                for i in range(n)
            ]
        )
        pub.publish_all(
            [
                (
                    topic("v-0002", "event"),
                    codec.encode_event("v-0002", "leak", 1, 1, "leak", True, value=2000.0, ts=base),
                )
            ]
        )
    finally:
        pub.close()
    series = victoria.export('air_pm25{node="v-0001"}', min_samples=n, timeout=30)
    assert len(series) == 1
    s = series[0]
    assert s["metric"]["district"] == "xuhui" and s["metric"]["zone"] == "caohejing"
    assert sorted(s["timestamps"]) == [base + i * 10 for i in range(n)]
    assert sorted(s["values"]) == [float(i) for i in range(n)]
    events = victoria.export('events_value{node="v-0002"}', min_samples=1, timeout=30)
    assert events and events[0]["metric"]["event"] == "leak" and events[0]["values"] == [2000.0]


class SmallBodyInfluxDB(InfluxDBServer):
    """InfluxDB 1.6 that answers 413 to any write body over 4 KB."""

    def prepare(self) -> None:
        super().prepare()
        text = self.config_path.read_text().replace("max-body-size = 0", "max-body-size = 4000")
        self.config_path.write_text(text)


def test_413_splits_the_batch_until_it_fits(mosquitto, tmp_path, tmp_path_factory, edges, request):
    small = SmallBodyInfluxDB(tmp_path_factory.mktemp("influx-small")).start()
    request.addfinalizer(small.stop)
    db = "split"
    config = write_config(
        tmp_path,
        mqtt_port=mosquitto.port,
        client_id="edge-413",
        metrics=True,
        sinks=[
            v1_sink(
                "district",
                small,
                db,
                batch_max_lines=2000,
                batch_wait_ms=300,
                retry_min_s=0.1,
                retry_max_s=0.5,
            )
        ],
    )
    edge = edges(config).start()
    n = 1000
    # The readings wait in the buffer while InfluxDB is down, so the batch read once it is
    # back holds them all, however the edge's commits and the forwarder's reads fell.
    small.stop()
    pub = Publisher(mosquitto.port, "split-publisher")
    try:
        pub.publish_all(counted_readings(n, prefix="t"))
    finally:
        pub.close()
    wait_for(
        lambda: (
            (metric(edge.metrics_text(), "urbansense_edge_sink_pending_lines", 'sink="district"') or 0) >= n
        ),
        what=f"{n} readings buffered",
    )
    small.start()
    wait_for(lambda: len(uptimes(small, db)) == n, what=f"{n} points through 413 splits")
    text = edge.metrics_text()
    assert re.search(r'sink_requests_total\{outcome="too_large",sink="district"\} [1-9]', text), text
    assert edge.dead_letters() == []


def test_lines_the_server_refuses_go_to_dead_letters(mosquitto, influxdb, tmp_path, edges):
    db = "refused"
    influxdb.create_database(db)
    # `pm25` is a bool in this database's current shard, so every float pm25 is refused
    # there (field type conflict, HTTP 400 "partial write"); lines of other measurements in
    # the same batches are written. (InfluxDB checks field types per shard.)
    base = now_ms() - 10_000
    write_lines(influxdb, db, b"air,district=xuhui,node=r-0001,zone=caohejing pm25=true %d" % (base - 1000))
    config = write_config(
        tmp_path,
        mqtt_port=mosquitto.port,
        client_id="edge-400",
        sinks=[v1_sink("district", influxdb, db, batch_wait_ms=200)],
    )
    edge = edges(config).start()
    msgs = []
    for i in range(40):
        node = f"r-{i % 10:04d}"
        if i % 10 == 3:  # 4 air readings that cannot be stored
            payload = codec.encode_reading(node, "air", 1, i, {"pm25": float(i)}, ts=base + i)
        else:  # 36 leak readings that can
            node = node.replace("r-", "q-")
            payload = codec.encode_reading(
                node, "leak", 1, i, {"wet": True, "uptime_s": float(i)}, ts=base + i
            )
        msgs.append((topic(node, "telemetry"), payload))
    pub = Publisher(mosquitto.port, "refused-publisher")
    try:
        pub.publish_all(msgs)
    finally:
        pub.close()
    wait_for(lambda: len(edge.dead_letters()) == 4, what="4 refused lines")
    rows = edge.dead_letters()
    assert {r[0] for r in rows} == {"sink_rejected"} and {r[3] for r in rows} == {"district"}
    assert all(bytes(r[2]).startswith(b"air,") for r in rows)
    wait_for(lambda: len(uptimes(influxdb, db, "leak")) == 36, what="the 36 good lines")
    assert edge.running()


def test_classification_of_answers():
    assert classify(204, "", None).kind == "ok"
    assert classify(413, "", None).kind == "too_large"
    assert classify(400, "partial write", None).kind == "rejected"
    assert classify(422, "", None).kind == "rejected"
    for status in (500, 502, 504, 408, 401, 403, 404):
        assert classify(status, "", None).kind == "retry"
    out = classify(429, "", "7")
    assert out.kind == "retry" and out.after_s == 7.0
    out = classify(503, "", "Wed, 21 Oct 2015 07:28:00 GMT")
    assert out.kind == "retry" and out.after_s == 0.0
    assert retry_after(None) is None and retry_after("soon") is None


def test_v1_sink_creates_its_database_on_a_fresh_server(influxdb_factory):
    influx = influxdb_factory()
    sink = InfluxV1Sink(SinkConfig(name="d", url=influx.url, database="fresh_db"))
    try:
        assert sink.write("air,node=a pm25=1 1700000000000").kind == "ok"
        assert influx.count("air", "fresh_db", "pm25") == 1
        influx.query('DROP DATABASE "fresh_db"')
        assert sink.write("air,node=a pm25=2 1700000001000").kind == "ok"  # created again
    finally:
        sink.close()
