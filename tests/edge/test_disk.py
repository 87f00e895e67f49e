"""The edge on a disk of its own that fills up, and the size cap measured on disk.

Every edge here is a real `urbansense edge run` subprocess whose buffer lives on a tmpfs
of a few megabytes the test mounts; InfluxDB is a real private server. What reached
InfluxDB is counted exactly: every reading once."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from edge import database
from tests.support.edge_process import v1_sink, write_config
from tests.support.influx_points import assert_exactly
from tests.support.metrics import metric
from tests.support.publisher import Publisher
from tests.support.readings import counted_readings
from tests.support.small_disk import tmpfs
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

FULL = "buffer disk full"
ROOM = "buffer disk has room again"


def test_full_disk_holds_messages_at_the_broker_and_resumes_when_forwarding_frees_room(
    mosquitto, influxdb_factory, tmp_path, edges
):
    influx = influxdb_factory()
    db = "disk_full"
    # The identity and timestamp indexes stay (dedup_hours): about 100 bytes a reading,
    # 3 MB here; the rest of the disk is what the buffer fills and forwarding frees.
    with tmpfs(tmp_path / "disk", 6 * 1024 * 1024) as disk:
        config = write_config(
            tmp_path,
            mqtt_port=mosquitto.port,
            client_id="edge-disk-full",
            metrics=True,
            # Groups of 100: a group's WAL (with the quarter of the reserve the WAL may
            # reach before a checkpoint) fits in the reserve; keep the reserve above that.
            buffer={
                "path": str(disk / "buffer.db"),
                "reserve_bytes": 1024 * 1024,
                "commit_max_messages": 100,
            },
            sinks=[v1_sink("district", influx, db)],
        )
        edge = edges(config)
        edge.start()
        influx.stop()  # nothing leaves the buffer: it fills
        n = 30_000
        pub = Publisher(mosquitto.port, "disk-full-publisher")
        try:
            # The broker takes every message (PUBACK) whatever the edge does.
            pub.publish_all(counted_readings(n, prefix="d"), timeout=300)
            wait_for(lambda: FULL in edge.log_text(), 120, what="the edge to find its disk full")
            text = edge.metrics_text()  # the edge is up and says so
            assert metric(text, "urbansense_edge_buffer_disk_full") == 1
            assert edge.running()
            log = edge.log_text()
            assert "cannot rollback" not in log
            assert "database or disk is full" in log
            # InfluxDB back, no room made by anyone: forwarding frees it, the edge resumes.
            influx.start()
            assert_exactly(influx, db, n, timeout=300)
            wait_for(
                lambda: metric(edge.metrics_text(), "urbansense_edge_buffer_disk_full") == 0,
                what="full-disk mode to end",
            )
        finally:
            pub.close()
        log = edge.log_text()
        fulls, rooms = log.count(FULL), log.count(ROOM)
        # One line per change of state: each full episode ends with one "room again".
        assert fulls >= 1 and rooms in (fulls, fulls - 1), (fulls, rooms)
        episodes = metric(edge.metrics_text(), "urbansense_edge_buffer_disk_full_episodes_total")
        assert episodes == fulls
        assert "Traceback" not in log and "cannot rollback" not in log
        assert edge.running() and edge.starts == 1
        assert edge.stop() == 0
        conn = sqlite3.connect(disk / "buffer.db")
        try:  # every reading was stored once: the identity index holds each
            assert conn.execute("SELECT count(*) FROM seen WHERE node LIKE 'd-%'").fetchone()[0] == n
        finally:
            conn.close()


def test_size_cap_bounds_database_and_wal_on_disk(mosquitto, tmp_path, edges):
    cap = 6_000_000
    with tmpfs(tmp_path / "disk", 32 * 1024 * 1024) as disk:
        config = write_config(
            tmp_path,
            mqtt_port=mosquitto.port,
            client_id="edge-cap-disk",
            metrics=True,
            buffer={"path": str(disk / "buffer.db"), "max_bytes": cap, "dedup_hours": 0.001},
            # A sink nobody answers: everything stays in the buffer, the cap decides.
            sinks=[
                {
                    "name": "nowhere",
                    "url": "http://127.0.0.1:9",
                    "database": "x",
                    "retry_min_s": 0.5,
                    "retry_max_s": 1.0,
                }
            ],
        )
        edge = edges(config).start()
        sizes: list[int] = []
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.05):
                sizes.append(database.file_bytes(disk / "buffer.db"))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        n = 40_000
        pub = Publisher(mosquitto.port, "cap-disk-publisher")
        try:
            pub.publish_all(counted_readings(n, prefix="w"), timeout=300)
            wait_for(
                lambda: (metric(edge.metrics_text(), "urbansense_edge_buffer_dropped_lines_total") or 0) > 0,
                120,
                what="the cap to drop lines",
            )
        finally:
            done.set()
            watcher.join()
            pub.close()
        # The cap counts the WAL too: what is on disk stays under it (it is kept after each
        # commit, so one group's growth is the most it could pass it by; the WAL alone
        # used to reach the cap's size again).
        assert max(sizes) <= cap * 1.1, f"on disk up to {max(sizes)} bytes with max_bytes {cap}"
        assert max(sizes) > cap * 0.5  # it did fill up to the cap
        on_disk = metric(edge.metrics_text(), "urbansense_edge_buffer_disk_bytes")
        assert on_disk is not None and on_disk <= cap * 1.1
        assert "Traceback" not in edge.log_text()
