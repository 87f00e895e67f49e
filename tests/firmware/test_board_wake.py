"""The pin wake on each board layer, under MicroPython with the stand-in chips of
tests/firmware/boards, against a real Mosquitto: a leak that lasts wakes a duty-cycled
node once, then it wakes at its interval (an ESP32's ext0 is level-triggered; a wake
armed on the level the line already has would end every sleep at once), and its clearing
wakes it again; a cover lifted off a manhole wakes a node on a long interval at once."""

from __future__ import annotations

import json

import pytest

from tests.firmware.boards import CHIPS, WIRING, BoardNode, bench_for, board_config, compile_standins
from tests.support.fleet import decoded, node_log, readings, started


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    return compile_standins(tmp_path_factory.mktemp("standins"))


def events(log) -> list[tuple[str, bool]]:
    return [(e["event"], e["state"]) for e in decoded(log, "event")]


def births(log) -> list[dict]:
    return [b for b in decoded(log, "status") if b["state"] == "online"]


def probe_volts(chip: str, wet: bool) -> dict:
    """The bench's ADC volts with the leak probe wet (conductance well over the default
    1000) or dry."""
    w = WIRING[chip]
    bench = bench_for(chip, "leak")
    bench["adc"][str(w["adc"]["leak"])] = round((0.8 if wet else 0.1) * w["adc_max_v"], 3)
    return bench["adc"]


@pytest.mark.parametrize("chip", CHIPS)
def test_a_lasting_leak_wakes_the_node_once_then_at_its_interval(
    tmp_path, bundle, standins, mosquitto, edge, chip
):
    interval_s = 5
    node_id = f"leak-{chip}"
    wake = WIRING[chip]["wake"]
    log = node_log(mosquitto, node_id)
    cfg = board_config(node_id, chip, "leak", mosquitto, "duty-cycled", interval_s)
    node = BoardNode(tmp_path / node_id, cfg, bench_for(chip, "leak"), standins, bundle)
    with started(node, log):
        log.wait_for(lambda ln: len(readings(ln)) >= 1, what="the first reading")
        node.wait_for_console("deepsleep")
        # The probe gets wet and stays wet: the comparator drives the wake line high.
        node.set_bench(dict(node.bench, adc=probe_volts(chip, True), pins={str(wake): 1}))
        log.wait_for(lambda ln: ("leak", True) in events(ln), what="the leak event")
        during = len(births(log))
        # Two more wakes while the leak lasts: the timer's, one interval apart.
        log.wait_for(lambda ln: len(births(ln)) >= during + 2, timeout=60, what="two wakes during the leak")
        wet_births = births(log)[during - 1 :]
        node.set_bench(dict(node.bench, adc=probe_volts(chip, False), pins={str(wake): 0}))
        log.wait_for(lambda ln: ("leak", False) in events(ln), what="the leak's clearing")
    assert events(log) == [("leak", True), ("leak", False)], node.console_tail(60)
    # While the leak lasted, each wake came a whole interval after the one before: no
    # wake loop. (Births carry the node's clock, synced at the first connect.)
    stamps = [b["ts"] for b in wet_births]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert gaps and all(gap >= interval_s * 1000 - 1000 for gap in gaps), (gaps, node.console_tail(60))
    if chip == "esp32":
        # The stand-in chip's own account: ext0 ended exactly two sleeps (the leak, its
        # clearing); every other sleep ran its time.
        ends = [ln.split(" woke ")[1].split()[0] for ln in node.chip_log() if ln.startswith("deepsleep")]
        assert ends.count("ext0") == 2, node.chip_log()


@pytest.mark.parametrize("chip", CHIPS)
def test_a_lifted_cover_wakes_the_node_at_once(tmp_path, bundle, standins, mosquitto, edge, chip):
    node_id = f"cover-{chip}"
    wake = WIRING[chip]["wake"]
    log = node_log(mosquitto, node_id)
    # An interval longer than the test waits: only the pin can wake the node in time.
    cfg = board_config(node_id, chip, "manhole", mosquitto, "duty-cycled", 600)
    node = BoardNode(tmp_path / node_id, cfg, bench_for(chip, "manhole"), standins, bundle)
    with started(node, log):
        log.wait_for(lambda ln: len(readings(ln)) >= 1, what="the first reading")
        node.wait_for_console("deepsleep")
        # Lifted: the magnet leaves the reed switch, which opens; the pull-up takes the
        # line high (the chip's own on a Pico W, the board's on an ESP32).
        node.set_pin(wake, None)
        log.wait_for(lambda ln: ("cover-open", True) in events(ln), what="the cover-open event")
        node.set_pin(wake, 0)
        log.wait_for(lambda ln: ("cover-open", False) in events(ln), what="the cover back on")
    assert events(log) == [("cover-open", True), ("cover-open", False)], node.console_tail(40)
    opened = [json.loads(m.payload) for m in log.on("/event")][0]
    assert opened["fields"]["cover_open"] is True
    lines = node.chip_log()
    assert not [ln for ln in lines if "pull-up conducting" in ln], lines
