"""A sink that refuses a field type, and a sink that hangs: what reaches InfluxDB (counted
exactly), what goes to dead letters, and what the operator reads in the log, against a
real `urbansense edge run` and InfluxDB 1.6."""

from __future__ import annotations

import signal

import pytest

from protocols import codec
from tests.support.edge_process import v1_sink, write_config
from tests.support.influx_points import assert_exactly, uptimes, write_lines
from tests.support.metrics import metric
from tests.support.publisher import Publisher, publish_paced
from tests.support.readings import counted_readings, now_ms
from tests.support.site import topic
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def test_a_field_type_conflict_is_said_once_with_the_fix_and_its_lines_go_to_dead_letters(
    mosquitto, influxdb, tmp_path, edges
):
    db = "type_conflict"
    influxdb.create_database(db)
    base = now_ms() - 60_000
    # `pm25` is a string in this database: every float pm25 the edge sends is refused.
    write_lines(influxdb, db, b'air,district=xuhui,node=x-0001,zone=caohejing pm25="high" %d' % (base - 1000))
    config = write_config(
        tmp_path,
        mqtt_port=mosquitto.port,
        client_id="edge-conflict",
        metrics=True,
        sinks=[v1_sink("district", influxdb, db, batch_wait_ms=200)],
    )
    edge = edges(config).start()
    msgs = []
    for i in range(800):  # 5 of every 8 are air readings (refused), the rest leak readings
        if i % 8 < 5:
            node = f"x-{i % 10:04d}"
            payload = codec.encode_reading(node, "air", 1, i, {"pm25": float(i)}, ts=base + i)
        else:
            node = f"y-{i % 10:04d}"
            payload = codec.encode_reading(
                node, "leak", 1, i, {"wet": True, "uptime_s": float(i)}, ts=base + i
            )
        msgs.append((topic(node, "telemetry"), payload))
    air, leak = 500, 300
    pub = Publisher(mosquitto.port, "conflict-publisher")
    try:
        pub.publish_all(msgs)
    finally:
        pub.close()
    wait_for(lambda: len(edge.dead_letters()) == air, 60, what=f"{air} refused air lines")
    wait_for(lambda: len(uptimes(influxdb, db, "leak")) == leak, what=f"the {leak} leak lines")
    assert uptimes(influxdb, db, "leak") == [float(i) for i in range(800) if i % 8 >= 5]
    rows = edge.dead_letters()
    assert {r[0] for r in rows} == {"sink_rejected"} and all(bytes(r[2]).startswith(b"air,") for r in rows)
    log = edge.log_text()
    said = [line for line in log.splitlines() if "field pm25 of measurement air" in line]
    assert len(said) == 1, said  # once, not once per line
    assert "is string there and these lines send float" in said[0]
    assert f"influx -database '{db}' -execute 'SHOW FIELD KEYS FROM \"air\"'" in said[0]
    assert "refused a line" not in log
    text = edge.metrics_text()
    counted = metric(
        text,
        "urbansense_edge_sink_type_conflict_lines_total",
        'field="pm25",measurement="air",sink="district"',
    )
    assert counted == air
    # The refused lines are found from the answer, not by halving the batch down to each.
    rejected = metric(text, "urbansense_edge_sink_requests_total", 'outcome="rejected",sink="district"')
    assert rejected is not None and rejected <= 20, rejected
    assert edge.running()


def test_a_hung_influxdb_is_said_down_and_back_with_the_time_and_backlog(
    mosquitto, influxdb_factory, tmp_path, edges
):
    influx = influxdb_factory()
    db = "hung"
    config = write_config(
        tmp_path,
        mqtt_port=mosquitto.port,
        client_id="edge-hung",
        metrics=True,
        sinks=[v1_sink("district", influx, db, timeout_s=1.0)],
    )
    edge = edges(config).start()
    n = 3000
    msgs = counted_readings(n, prefix="h")
    pub = Publisher(mosquitto.port, "hung-publisher")
    try:
        pub.publish_all(msgs[:500])
        wait_for(lambda: len(uptimes(influx, db)) == 500, what="the first 500")
        influx.process.send_signal(signal.SIGSTOP)  # hung: takes connections, answers nothing
        try:
            sender = publish_paced(pub, msgs[500:], per_second=1000)
            wait_for(lambda: "sink district: write failed" in edge.log_text(), 60, what="the sink said down")
            assert metric(edge.metrics_text(), "urbansense_edge_sink_up", 'sink="district"') == 0
            sender.join(120)
            assert not sender.is_alive()
        finally:
            influx.process.send_signal(signal.SIGCONT)
        assert_exactly(influx, db, n)
        wait_for(lambda: "sink district: back after" in edge.log_text(), what="the sink said back")
    finally:
        pub.close()
    log = edge.log_text()
    down = [line for line in log.splitlines() if "sink district: write failed" in line]
    back = [line for line in log.splitlines() if "sink district: back after" in line]
    # One line when it went down, one when it came back (a connection the hang left
    # broken may make one more short episode: each is said as a pair, never per attempt).
    assert 1 <= len(down) == len(back) <= 3, down + back
    assert "down, keeping its lines" in down[0] and "backlog" in down[0], down
    assert " s down (" in back[0] and "backlog of" in back[0], back
    assert all(" WARNING " in line for line in down + back)
    assert "None" not in down[0]
    assert metric(edge.metrics_text(), "urbansense_edge_sink_up", 'sink="district"') == 1
