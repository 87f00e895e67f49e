"""The whole application (boot, connect, sample, publish, queue, sleep) under the
MicroPython unix port, compiled with mpy-cross, against a real Mosquitto."""

from __future__ import annotations

import json
import time

import pytest

from field.bundle import sources as firmware_sources
from hil import micropython
from hil.sim import DEFAULT_HEAP
from tests.support.fleet import decoded, make_node, node_log, readings, started


def test_every_firmware_file_compiles_with_mpy_cross(bundle):
    for _, rel in firmware_sources():
        if rel != "main.py":
            assert (bundle / (rel[:-3] + ".mpy")).stat().st_size > 0, rel


@pytest.mark.parametrize("kind", ["parking", "air", "leak", "manhole"])
def test_duty_cycled_node_of_every_kind(tmp_path, bundle, mosquitto, edge, kind):
    node_id = f"dc-{kind}"
    log = node_log(mosquitto, node_id)
    node = make_node(tmp_path, bundle, mosquitto, kind, node_id, "duty-cycled", 0.3)
    with started(node, log):
        # Four distinct readings: a wake later than two intervals may send one again.
        log.wait_for(lambda ln: len(set(readings(ln))) >= 4, what="four duty cycles")
        node.wait_for_console("awake")
        got = readings(log)
        births = decoded(log, "status")  # before stop(): killing the node fires its will
    # One boot, seq kept across deep sleep: 0, 1, 2, ... each reading once, in order.
    first = list(dict.fromkeys(got))
    assert first == [(1, s) for s in range(len(first))]
    # A birth at every wake, and no will: every sleep began with a clean DISCONNECT.
    assert len(births) >= 4 and all(b["state"] == "online" for b in births)
    assert births[0]["reset"] == "power" and births[-1]["reset"] == "deepsleep"
    assert node.stats.wakes >= 3
    assert node.stats.heap_peak > 0


@pytest.mark.parametrize("kind", ["parking", "air", "leak", "manhole"])
def test_always_on_node_runs_in_its_heap(tmp_path, bundle, mosquitto, edge, kind):
    node_id = f"ao-{kind}"
    log = node_log(mosquitto, node_id)
    node = make_node(tmp_path, bundle, mosquitto, kind, node_id, "always-on", 0.2)
    with started(node, log):
        log.wait_for(lambda ln: len(readings(ln)) >= 10, what="ten readings")
        assert node.running and node.stats.exit_code is None, node.console_tail()
        node.stop()  # the process dies without a DISCONNECT: the broker sends the will
        log.wait_for(
            lambda ln: any(s["state"] == "offline" for s in decoded(ln, "status")), what="the last will"
        )
    statuses = decoded(log, "status")
    assert [s["state"] for s in statuses] == ["online", "offline"]
    # Both are retained: a subscriber that comes later is told the node is offline.
    late = node_log(mosquitto, node_id)
    try:
        late.wait_for(lambda ln: ln.on("/status"), what="the retained status")
        assert late.on("/status")[0].retain and late.on("/status")[0].json()["state"] == "offline"
    finally:
        late.close()
    got = readings(log)
    assert list(dict.fromkeys(got))[:10] == [(1, s) for s in range(10)]
    assert "MemoryError" not in node.console_tail(200)


def test_bad_config_is_refused_in_one_line(tmp_path, bundle, node_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text(
        json.dumps(
            {
                "node": "P_1",
                "district": "xuhui",
                "zone": "caohejing",
                "kind": "parking",
                "platform": "sim",
                "broker": {"host": "127.0.0.1"},
            }
        )
    )
    proc = micropython.run([str(bundle / "main.py")], heap=DEFAULT_HEAP, micropypath=node_path, cwd=flash)
    assert proc.returncode == 2
    lines = proc.stdout.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: node:"), lines


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"kind": "bus"}, "kind"),
        ({"interval_s": 0.01}, "interval_s"),
        ({"broker": {"port": 1883}}, "broker.host"),
        ({"thresholds": {"pm25": 50}}, "thresholds.pm25"),
        ({"queue_max": 1}, "queue_max"),
        ({"ntp": "no"}, "ntp"),
    ],
)
def test_config_errors_name_the_key(tmp_path, bundle, node_path, patch, key):
    cfg = {
        "node": "p-1",
        "district": "xuhui",
        "zone": "caohejing",
        "kind": "parking",
        "platform": "sim",
        "broker": {"host": "127.0.0.1"},
    }
    cfg.update(patch)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    proc = micropython.run([str(bundle / "main.py")], heap=DEFAULT_HEAP, micropypath=node_path, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout.decode().startswith(f"config error: {key}:"), proc.stdout.decode()


def test_hil_console_stimuli_and_network_lines(tmp_path, bundle, node_path, mosquitto):
    """HIL mode (config "hil": true): stimulus lines on the console, as a rig sends them to
    a real board over USB serial, answered with !ok / !err."""
    import os
    import subprocess

    from hil.sim import node_config
    from tests.support.fleet import node_log

    cfg = node_config(
        "hil-m1",
        "manhole",
        "xuhui",
        "caohejing",
        mosquitto.host,
        mosquitto.port,
        0.2,
        schedule="always-on",
        seed=1,
        hil=True,
    )
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    log = node_log(mosquitto, "hil-m1")
    proc = subprocess.Popen(
        [micropython.interpreter(), "-X", f"heapsize={DEFAULT_HEAP}", str(bundle / "main.py")],
        cwd=tmp_path,
        env=dict(os.environ, MICROPYPATH=node_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    try:

        def read_until(prefix: str) -> str:
            while True:
                out = proc.stdout.readline()
                assert out, "node exited"
                print(out, end="")
                if out.startswith(prefix):
                    return out.strip()

        def answer(line: str) -> str:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            return read_until("!")

        assert answer('!stim {"tilt_deg": 0.0, "cover_open": false}') == "!ok"
        # The first reading fixes the installed angle: let it be taken with the cover seated.
        read_until("hil-m1 published")
        assert answer('!stim {"tilt_deg": 15.0}') == "!ok"
        log.wait_for(lambda ln: ln.on("/event"), what="tilt event")
        assert answer("!stim not-json") == "!err stimulus is not JSON"
        assert answer("!reboot-now") == "!err unknown console command"
        assert answer("!net down") == "!ok"
        assert answer("!net up") == "!ok"
    finally:
        proc.kill()
        print(proc.stdout.read())  # the node's console, shown when the test fails
        proc.wait()
        log.close()
    events = [json.loads(m.payload) for m in log.on("/event")]
    assert events[0]["event"] == "tilt" and events[0]["state"] is True


def test_broker_credentials_accepted_and_a_wrong_password_reported(tmp_path, bundle, mosquitto_factory):
    """A broker without anonymous access: the node logs in with its config's credentials;
    with a wrong password it says why in one console line per attempt and keeps its data."""
    import subprocess

    pwfile = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(pwfile), "p-auth", "s3cret"], check=True, capture_output=True
    )
    broker = mosquitto_factory(anonymous=False, extra_config=f"password_file {pwfile}")
    good = make_node(tmp_path, bundle, broker, "parking", "p-auth", "always-on", 0.3)
    good.config["broker"].update(username="p-auth", password="s3cret")
    (good.flash_dir / "config.json").write_text(json.dumps(good.config))
    bad = make_node(tmp_path, bundle, broker, "parking", "p-auth2", "always-on", 0.3)
    bad.config["broker"].update(username="p-auth", password="wrong")
    (bad.flash_dir / "config.json").write_text(json.dumps(bad.config))
    try:
        good.start()
        bad.start()
        good.wait_for_console("connected")
        line = bad.wait_for_console("error mqtt")
        assert "bad user name or password" in line or "not authorised" in line, line
        assert not any("connected" in ln for ln in bad.console)
        assert bad.running  # it keeps sampling into its queue and retrying
    finally:
        good.stop()
        bad.stop()
        print(good.console_tail(10), bad.console_tail(10))
    assert len(bad.taken()) > 0


def test_parked_car_through_control_file_one_occupied_one_vacant(tmp_path, bundle, mosquitto, edge):
    """The whole chain for parking: stimuli in control.json -> QMC5883L register bytes from
    the sim HAL -> driver -> adaptive baseline -> events at the broker, with the sensor's
    noise and a slow drift of the field ramped by the harness all along."""
    node_id = "car-p1"
    log = node_log(mosquitto, node_id)
    node = make_node(tmp_path, bundle, mosquitto, "parking", node_id, "always-on", 0.1)
    node.set_stimulus("mag_delta_ut", 0.0)
    node.set_stimulus("mag_drift_ut", 0.0)
    phases = [(0.0, 2.0), (40.0, 2.0), (0.0, 2.0)]  # (car's field rise, seconds)
    with started(node, log):
        node.wait_for_console("connected")
        t0 = time.monotonic()
        total = sum(s for _, s in phases)
        for rise, seconds in phases:
            node.set_stimulus("mag_delta_ut", rise)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                # 6 uT of drift over the run, the baseline must follow it while the bay is empty
                node.set_stimulus("mag_drift_ut", round(6.0 * (time.monotonic() - t0) / total, 2))
                time.sleep(0.2)
        log.wait_for(lambda ln: len(ln.on("/event")) >= 2, what="two occupancy events")
        time.sleep(0.5)
    events = [(e["event"], e["state"]) for e in decoded(log, "event")]
    assert events == [("occupancy", True), ("occupancy", False)]
