"""The harness pieces the runner and the demo stand on, against a real Mosquitto and a real
InfluxDB: the broker observer, the InfluxDB visibility probe, the sequence verdict."""

from __future__ import annotations

import time
import urllib.request

import pytest

from hil.runner import contains, sequence_verdict
from hil.stack.observer import CityObserver
from hil.stack.probes import EventPointProbe, Moment
from protocols import codec


def _bytes(payload) -> bytes:
    return payload if isinstance(payload, bytes) else payload.encode()


@pytest.fixture
def observer(mosquitto):
    obs = CityObserver(
        mosquitto.host, mosquitto.port, client_id=f"test-observer-{time.monotonic_ns()}"
    ).start()
    yield obs
    obs.stop()


def test_observer_records_readings_alarms_acks_and_status(observer):
    now = int(time.time() * 1000)
    base = "city/v1/xuhui/caohejing/a-0001"
    observer.publish(
        base + "/status", _bytes(codec.encode_status("a-0001", "air", 1, 0, "online", interval_s=5))
    )
    observer.publish(
        base + "/telemetry", _bytes(codec.encode_reading("a-0001", "air", 1, 1, {"pm25": 20.0}, ts=now))
    )
    observer.publish(
        base + "/telemetry",
        _bytes(
            codec.encode_batch(
                "a-0001",
                "air",
                [
                    codec.reading_item(1, 2, {"pm25": 21.0}, ts=now + 1),
                    codec.reading_item(1, 4, {"pm25": 22.0}, ts=now + 2),
                ],
            )
        ),
    )
    observer.publish(
        base + "/event", _bytes(codec.encode_event("a-0001", "air", 1, 3, "pm25", True, value=180.0, ts=now))
    )
    observer.publish(
        base + "/cmd/ack",
        _bytes(codec.encode_ack("a-0001", "air", 1, 4, "c-1", True, result={"interval_s": 10})),
    )
    observer.publish(
        "alarms/v1/xuhui/caohejing/a-0001/pm25", b'{"state": true, "severity": "warning", "value": 180.0}'
    )
    # An edge's receipt is no node's message: neither decoded nor counted as invalid.
    observer.publish(base + "/receipt", b'{"v": 1, "node": "a-0001", "ts": 1, "got": [[1, 1, 4]]}')
    observer.publish(base + "/telemetry", b"not json")
    t0 = time.monotonic() - 5

    assert observer.wait_alarm("a-0001", "pm25", True, t0, timeout=10) is not None
    ack = observer.wait_ack("a-0001", "c-1", t0, timeout=10)
    assert ack is not None and ack.ok and ack.result == {"interval_s": 10}
    assert observer.wait_for(lambda: observer.invalid_on[base + "/telemetry"] == 1, 10)
    assert observer.invalid_on[base + "/receipt"] == 0
    seen = observer.snapshot()["a-0001"]
    assert (seen.district, seen.zone, seen.kind, seen.online) == ("xuhui", "caohejing", "air", True)
    assert seen.readings == [(1, 1), (1, 2), (1, 4)]
    assert seen.events == [(1, 3)]
    assert observer.rates()[("xuhui", "caohejing")] > 0
    assert observer.wait_alarm("a-0001", "pm25", False, t0, timeout=0.2) is None
    assert observer.wait_online(["a-0001", "a-0002"], timeout=0.2) == ["a-0002"]


def test_observer_sees_the_last_will_as_offline(observer):
    topic = "city/v1/xuhui/caohejing/p-0009/status"
    observer.publish(topic, _bytes(codec.encode_status("p-0009", "parking", 1, 0, "online")))
    assert observer.wait_online(["p-0009"], timeout=10) == []
    observer.publish(topic, _bytes(codec.encode_status("p-0009", "parking", 1, 0, "offline")))
    assert observer.wait_for(lambda: observer.nodes["p-0009"].online is False, 10)


def _write(influx, db: str, line: str) -> None:
    req = urllib.request.Request(f"{influx.url}/write?db={db}&precision=ms", data=line.encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


def test_probe_reports_when_the_event_point_became_visible(influxdb):
    influxdb.create_database("probe_test")
    started = Moment.now()
    probe = EventPointProbe(influxdb, "probe_test", "l-0001", "leak", True, started, give_up_s=10)
    time.sleep(0.3)
    assert not probe.done()
    ts = int(time.time() * 1000)
    # a cleared point and another node's point must not count
    _write(influxdb, "probe_test", f"events,node=l-0001,event=leak state=false {ts}")
    _write(influxdb, "probe_test", f"events,node=l-0002,event=leak state=true {ts}")
    time.sleep(0.3)
    assert not probe.done()
    _write(influxdb, "probe_test", f"events,node=l-0001,event=leak state=true {ts}")
    after = probe.result()
    assert after is not None and 500 <= after <= 10000


def test_probe_gives_up_and_says_so(influxdb):
    influxdb.create_database("probe_test")
    probe = EventPointProbe(influxdb, "probe_test", "l-0404", "leak", True, Moment.now(), give_up_s=0.5)
    assert probe.result() is None


def test_sequence_verdict_counts_gaps_repeats_and_reordering():
    clean = sequence_verdict([(1, 0), (1, 1), (1, 3)], [(1, 2)], in_order=True)
    assert (clean.gaps, clean.duplicates, clean.out_of_order, clean.distinct_readings) == (0, 0, 0, 3)
    gap = sequence_verdict([(1, 0), (1, 1), (1, 4)], [])
    assert gap.gaps == 2
    # a reboot starts the counter again: not a gap
    reboot = sequence_verdict([(1, 5), (1, 6), (2, 0), (2, 1)], [])
    assert (reboot.gaps, reboot.boots) == (0, 2)
    replay = sequence_verdict([(1, 0), (1, 1), (1, 1), (1, 2)], [], in_order=True)
    assert (replay.duplicates, replay.out_of_order) == (1, 0)
    shuffled = sequence_verdict([(1, 0), (1, 2), (1, 1)], [], in_order=True)
    assert shuffled.out_of_order == 1 and shuffled.gaps == 0


def test_contains_compares_results_by_subset():
    actual = {"interval_s": 5, "thresholds": {"tilt_deg": 20.0, "ch4_lel": 10}}
    assert contains(actual, {"interval_s": 5.0, "thresholds": {"tilt_deg": 20}})
    assert not contains(actual, {"thresholds": {"tilt_deg": 12}})
    assert not contains(actual, {"queue_max": 500})
    assert not contains({"flag": 1}, {"flag": True})


def test_sim_board_handle_drives_a_sim_node(mosquitto, observer, tmp_path):
    """`--board sim`: the firmware under the unix port, driven through its control.json."""
    import json

    from hil.node_handles import SimNodeHandle
    from hil.scenario import BoardSpec, Site

    spec = BoardSpec(node="a-0042", kind="air", schedule="always-on", interval_s=1)
    handle = SimNodeHandle(
        spec, Site(district="hil", zone="rig"), (mosquitto.host, mosquitto.port), tmp_path / "a-0042"
    )
    handle.start()
    try:
        assert observer.wait_online(["a-0042"], timeout=30) == [], handle.log_tail()
        handle.stimulate({"pm25": 180.0})
        handle.cut_network(True)
        control = json.loads((tmp_path / "a-0042" / "control.json").read_text())
        assert control == {"stimuli": {"pm25": 180.0}, "net": "down"}
        handle.stimulate({"pm25": None})
        handle.cut_network(False)
        control = json.loads((tmp_path / "a-0042" / "control.json").read_text())
        assert control == {"stimuli": {}, "net": "up"}
        assert "a-0042" in handle.log_tail()
    finally:
        handle.stop()


def test_boards_reach_the_rig_broker_on_the_board_facing_address(tmp_path):
    """`hil run --broker-host ADDR`: the broker also listens on ADDR (here another loopback
    address), boards are given it, and what they publish there reaches the observer."""
    import paho.mqtt.client as mqtt

    from hil.stack.city_stack import CityStack

    with CityStack(tmp_path, sites=[], board_host="127.0.0.2") as stack:
        host, port = stack.board_broker_address
        assert (host, port) == ("127.0.0.2", stack.broker.port)
        board = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="p-0077")
        board.connect(host, port)
        board.loop_start()
        try:
            board.publish(
                "city/v1/hil/rig/p-0077/status",
                _bytes(codec.encode_status("p-0077", "parking", 1, 0, "online")),
                qos=1,
            ).wait_for_publish(10)
            assert stack.observer.wait_online(["p-0077"], timeout=10) == []
        finally:
            board.loop_stop()
            board.disconnect()
