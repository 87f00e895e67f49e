"""Fault tests that count: after kill -9 of the edge, an InfluxDB outage or a broker
restart, InfluxDB holds exactly the N readings published, none missing and none doubled.

Every edge here is a real `urbansense edge run` subprocess, so SIGKILL is real. The
readings carry `age_ms` (see helpers.counted_readings), so a reading written twice would
appear twice with different timestamps rather than merge silently."""

from __future__ import annotations

import random
import signal
import time

import pytest

from hil.services import free_port
from protocols import codec
from tests.support.edge_process import v1_sink, write_config
from tests.support.influx_points import assert_exactly, influx_count, uptimes
from tests.support.metrics import metric
from tests.support.publisher import Publisher, publish_paced
from tests.support.readings import counted_readings, now_ms
from tests.support.site import topic
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def test_sigkill_the_edge_several_times_loses_and_doubles_nothing(mosquitto, influxdb, tmp_path, edges):
    db = "fault_kill"
    config = write_config(
        tmp_path, mqtt_port=mosquitto.port, client_id="edge-kill", sinks=[v1_sink("district", influxdb, db)]
    )
    edge = edges(config).start()
    n = 3000
    pub = Publisher(mosquitto.port, "kill-publisher")
    try:
        sender = publish_paced(pub, counted_readings(n, prefix="k"), per_second=800)
        rng = random.Random(7)
        for _ in range(4):
            time.sleep(rng.uniform(0.4, 0.9))
            edge.kill()  # SIGKILL: mid-commit, mid-write, anywhere
            time.sleep(rng.uniform(0.0, 0.5))
            edge.start()
        sender.join(120)
        assert not sender.is_alive()
        assert_exactly(influxdb, db, n)
        assert edge.starts == 5
    finally:
        pub.close()
    # the identity index did its job: redeliveries were recognised, not rewritten
    assert edge.query("SELECT count(*) FROM seen WHERE node LIKE 'k-%'")[0][0] == n


def test_influxdb_outage(mosquitto, influxdb_factory, tmp_path, edges):
    influx = influxdb_factory()
    db = "fault_influx"
    config = write_config(
        tmp_path,
        mqtt_port=mosquitto.port,
        client_id="edge-influx-outage",
        sinks=[v1_sink("district", influx, db)],
    )
    edges(config).start()
    n = 2000
    msgs = counted_readings(n, prefix="i")
    pub = Publisher(mosquitto.port, "influx-outage-publisher")
    try:
        pub.publish_all(msgs[:500])
        wait_for(lambda: len(uptimes(influx, db)) == 500, what="first 500")
        influx.stop()
        sender = publish_paced(pub, msgs[500:], per_second=1000)
        time.sleep(3.0)  # the edge retries with backoff meanwhile
        influx.start()
        sender.join(60)
        assert_exactly(influx, db, n)
    finally:
        pub.close()


def test_mosquitto_restart(mosquitto_factory, influxdb, tmp_path, edges):
    broker = mosquitto_factory()
    db = "fault_broker"
    config = write_config(
        tmp_path,
        mqtt_port=broker.port,
        client_id="edge-broker-restart",
        sinks=[v1_sink("district", influxdb, db)],
    )
    edge = edges(config).start()
    n = 2000
    msgs = counted_readings(n, prefix="b")
    pub = Publisher(broker.port, "broker-restart-publisher")
    pub.publish_all(msgs[:1000])
    pub.close()
    # Restart at once: part of the first 1000 is still queued at the broker for the edge's
    # persistent session, part is in flight to the edge.
    broker.restart(down_for=1.0)
    wait_for(lambda: edge.connections() >= 2 * edge.sessions, what="edge reconnect")
    pub = Publisher(broker.port, "broker-restart-publisher-2")
    try:
        pub.publish_all(msgs[1000:])
        assert_exactly(influxdb, db, n)
    finally:
        pub.close()


def test_a_dead_sink_does_not_stall_the_other(mosquitto, influxdb, influxdb_factory, tmp_path, edges):
    dead_port = free_port()
    db = "fault_two_sinks"
    dead_url_sink = {
        "name": "city",
        "url": f"http://127.0.0.1:{dead_port}",
        "api": "v1",
        "database": db,
        "data": "raw",
        "batch_wait_ms": 20,
        "retry_min_s": 0.05,
        "retry_max_s": 0.5,
    }
    config = write_config(
        tmp_path,
        mqtt_port=mosquitto.port,
        client_id="edge-two-sinks",
        metrics=True,
        sinks=[dead_url_sink, v1_sink("district", influxdb, db)],
    )
    edge = edges(config).start()
    n = 1000
    pub = Publisher(mosquitto.port, "two-sinks-publisher")
    try:
        pub.publish_all(counted_readings(n, prefix="s"))
        ts = now_ms() - 50
        pub.publish_all(
            [
                (
                    topic("m-0900", "event"),
                    codec.encode_event("m-0900", "manhole", 1, 1, "tilt", True, value=20.0, ts=ts),
                )
            ]
        )
        assert_exactly(influxdb, db, n)
        wait_for(lambda: influxdb.query("SELECT * FROM events WHERE node='m-0900'", db=db), what="event")
        text = edge.metrics_text()
        failed = metric(text, "urbansense_edge_sink_failed_writes_total", 'sink="city"')
        pending = metric(text, "urbansense_edge_sink_pending_lines", 'sink="city"')
        assert failed > 0 and pending >= n
        # the dead sink comes up (a fresh server: the edge creates the database) and catches up
        late = influxdb_factory(port=dead_port)
        assert_exactly(late, db, n)
        wait_for(lambda: late.query("SELECT * FROM events WHERE node='m-0900'", db=db), what="late event")
    finally:
        pub.close()


def test_buffer_cap_drops_oldest_telemetry_and_keeps_every_event(
    mosquitto, influxdb_factory, tmp_path, edges
):
    dead_port = free_port()
    db = "fault_cap"
    sink = {
        "name": "district",
        "url": f"http://127.0.0.1:{dead_port}",
        "api": "v1",
        "database": db,
        "batch_wait_ms": 20,
        "retry_min_s": 0.05,
        "retry_max_s": 0.5,
    }
    config = write_config(
        tmp_path,
        mqtt_port=mosquitto.port,
        client_id="edge-cap",
        metrics=True,
        # Above what the indexes take (identities and timestamps, ~115 bytes a reading:
        # ~700 KB for these 6,060), well below that plus the 6,000 lines waiting (~135
        # bytes a line): the cap keeps the newest ~2,000 of them.
        buffer={"max_bytes": 1_300_000},
        sinks=[sink],
    )
    edge = edges(config).start()
    n, n_events = 6000, 60
    msgs = counted_readings(n, prefix="c")
    events = []
    base = now_ms() - 120_000
    for j in range(n_events):
        events.append(
            (
                topic("m-0950", "event"),
                codec.encode_event(
                    "m-0950", "manhole", 1, j, "cover-open", j % 2 == 0, value=float(j), ts=base + j
                ),
            )
        )
    mixed = []
    for k in range(n_events):  # events spread through the telemetry, oldest to newest
        mixed += msgs[k * 100 : (k + 1) * 100] + [events[k]]
    pub = Publisher(mosquitto.port, "cap-publisher")
    try:
        pub.publish_all(mixed, timeout=120)
        wait_for(
            lambda: (metric(edge.metrics_text(), "urbansense_edge_buffer_dropped_lines_total") or 0) > 0,
            what="cap to drop telemetry",
        )
        wait_for(lambda: edge.query("SELECT count(*) FROM seen")[0][0] == n + n_events, what="all committed")
        time.sleep(1.5)  # one more maintenance tick
        assert edge.query("SELECT count(*) FROM outbox WHERE stream=4")[0][0] == n_events
        kept = edge.query("SELECT coalesce(sum(n), 0) FROM outbox WHERE stream=1")[0][0]
        assert 0 < kept < n
        # the sink comes up: every event arrives, and the telemetry that is left is the newest
        influx = influxdb_factory(port=dead_port)
        wait_for(lambda: influx_count(influx, db, "events", "state") == n_events, what="all events")
        got = wait_for(
            lambda: (lambda u: u if len(u) >= kept else None)(uptimes(influx, db)), what="kept telemetry"
        )
        assert len(got) == kept and got[-1] == n - 1
        assert [int(v) for v in got] == list(range(n - kept, n))
    finally:
        pub.close()


def test_shared_subscription_two_workers(mosquitto, influxdb, tmp_path, edges):
    db, city = "fault_shared", "fault_shared_city"
    workers = []
    for name in ("w1", "w2"):
        config = write_config(
            tmp_path / name,
            mqtt_port=mosquitto.port,
            client_id=f"edge-shared-{name}",
            mqtt_extra={"shared_group": "caohejing"},
            sinks=[v1_sink("district", influxdb, db), v1_sink("city", influxdb, city, "rollup")],
            extra={"rollup": {"delay_s": 0.2}},
        )
        workers.append(edges(config).start())
    n = 2000
    pub = Publisher(mosquitto.port, "shared-publisher")
    try:
        # two minutes old at least, so that every minute is closed and rolled up at once
        pub.publish_all(counted_readings(n, prefix="w", min_age_ms=120_000))
        assert_exactly(influxdb, db, n)
    finally:
        pub.close()
    shares = [w.query("SELECT count(*) FROM seen")[0][0] for w in workers]
    assert sum(shares) == n and all(s > 0 for s in shares), shares

    # Each worker's rollups are partial minutes, told apart by the `worker` tag; together
    # they count every reading once.
    def rollup_total():
        try:
            series = influxdb.query('SELECT sum("pm25_count") FROM "air_1m" GROUP BY "worker"', db=city)
        except Exception:
            return None
        return {s["tags"]["worker"]: s["values"][0][1] for s in series}

    totals = wait_for(
        lambda: (lambda t: t if t and sum(t.values()) == n else None)(rollup_total()),
        what="rollups of every reading",
    )
    assert set(totals) == {"edge-shared-w1", "edge-shared-w2"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_mid_stream_is_clean_and_loses_nothing(mosquitto, influxdb, tmp_path, edges, sig):
    db = f"fault_stop_{sig.name.lower()}"
    config = write_config(
        tmp_path,
        mqtt_port=mosquitto.port,
        client_id=f"edge-stop-{sig.name.lower()}",
        sinks=[v1_sink("district", influxdb, db)],
    )
    edge = edges(config).start()
    n = 1500
    pub = Publisher(mosquitto.port, f"stop-publisher-{sig.name.lower()}")
    try:
        sender = publish_paced(pub, counted_readings(n, prefix="z"), per_second=1000)
        time.sleep(0.7)
        edge.proc.send_signal(sig)  # Ctrl-C or SIGTERM while messages flow
        assert edge.proc.wait(30) == 0
        assert "edge stopped" in edge.log_text()
        time.sleep(0.3)
        edge.start()
        sender.join(60)
        assert_exactly(influxdb, db, n)
    finally:
        pub.close()
