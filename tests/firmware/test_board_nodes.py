"""Every kind on both schedules on each board layer (firmware/hal/esp32.py, hal/rp2.py),
under MicroPython with the stand-in chips of tests/firmware/boards, against a real
Mosquitto: the node boots on the chip's own reset causes, reads the sensors on the
buses and pins its HAL opens, keeps its clock through the chip's sleeps, and sleeps as
the chip sleeps (the radio off on a Pico W, no pull-up conducting on an ESP32)."""

from __future__ import annotations

import time

import pytest

from hil.sim import KINDS
from tests.firmware.boards import BATTERY_V, CHIPS, BoardNode, bench_for, board_config, compile_standins
from tests.support.fleet import decoded, node_log, readings, started


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    return compile_standins(tmp_path_factory.mktemp("standins"))


INTERVAL_S = 5  # the shortest a board accepts (node/config.py)

# What each kind's sensors read on the bench (tests/firmware/boards: bench_for).
EXPECTED = {
    "air": {
        "pm1": 7.0,
        "pm25": 12.0,
        "pm10": 19.0,
        "co2": 612.0,
        "temperature_c": 21.0,
        "humidity_pct": 55.0,
    },
    "parking": {"occupied": False},
    "leak": {"wet": False},
    "manhole": {"cover_open": False},
}


def run_node(tmp_path, bundle, standins, broker, chip: str, kind: str, schedule: str, count: int):
    """Run a node until `count` readings reached the broker. Returns (node, log)."""
    node_id = f"b-{chip}-{kind}-{schedule[0]}"
    log = node_log(broker, node_id)
    cfg = board_config(node_id, chip, kind, broker, schedule, INTERVAL_S)
    node = BoardNode(tmp_path / node_id, cfg, bench_for(chip, kind), standins, bundle)
    with started(node, log):
        log.wait_for(lambda ln: len(readings(ln)) >= count, timeout=60, what=f"{count} readings")
        node.stop()
    return node, log


def check_readings(node, log, chip: str, kind: str, count: int) -> list[dict]:
    got = [r for m in decoded(log, "telemetry") for r in m["readings"]]
    assert [(r["boot"], r["seq"]) for r in got][:count] == [(1, s) for s in range(count)], node.console_tail(
        40
    )
    for r in got:
        fields = r["fields"]
        for name, value in EXPECTED[kind].items():
            assert fields.get(name) == pytest.approx(value, abs=0.01), (name, fields)
        # ESP32: read_uv() at 11 dB through its 1:2 divider; Pico W: VSYS/3 read with the
        # radio off.
        assert fields["battery_v"] == pytest.approx(BATTERY_V, abs=0.05), fields
    console = "\n".join(node.console)
    assert "Traceback" not in console and "error" not in console, console
    assert "lwip.setsockopt() not implemented" not in console
    lines = node.chip_log()
    assert not [ln for ln in lines if "radio=on" in ln], lines  # every lightsleep had the radio off
    assert not [ln for ln in lines if "adc gpio29" in ln], lines  # VSYS never read under the radio
    assert not [ln for ln in lines if "pull-up conducting" in ln], lines
    return got


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chip", CHIPS)
def test_duty_cycled_node_on_the_board(tmp_path, bundle, standins, mosquitto, edge, chip, kind):
    start_ms = int(time.time() * 1000)
    node, log = run_node(tmp_path, bundle, standins, mosquitto, chip, kind, "duty-cycled", 3)
    got = check_readings(node, log, chip, kind, 3)
    births = [b for b in decoded(log, "status") if b["state"] == "online"]  # not the will
    assert [b["reset"] for b in births[:3]] == ["power", "deepsleep", "deepsleep"], births
    # A reading at every wake, each stamped by the node's own clock once it has synced
    # (the first wake's is sent with its age, taken before the first connect). Two
    # wakes are a sleep apart: the clock ran on through the chip's sleep and reset.
    stamped = [r["ts"] for r in got[1:3] if r["time_source"] == "node"]
    assert len(stamped) == 2, got
    assert stamped[1] - stamped[0] >= INTERVAL_S * 1000 - 500, stamped
    assert start_ms <= stamped[0] and stamped[1] <= int(time.time() * 1000), (start_ms, stamped)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chip", CHIPS)
def test_always_on_node_on_the_board(tmp_path, bundle, standins, mosquitto, edge, chip, kind):
    node, log = run_node(tmp_path, bundle, standins, mosquitto, chip, kind, "always-on", 2)
    check_readings(node, log, chip, kind, 2)
    births = decoded(log, "status")
    assert (births[0]["state"], births[0]["reset"]) == ("online", "power"), births
