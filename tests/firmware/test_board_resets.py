"""Reset causes and the clock on each board layer, under MicroPython with the stand-in
chips of tests/firmware/boards, against a real Mosquitto. The ports tell few resets
apart (an ESP32 reports machine.reset() and a crash both as HARD_RESET; an rp2 knows only
power-on and watchdog, machine.reset() being a watchdog reboot), and an rp2's clock
restarts at every reset: the HALs keep what the chip cannot."""

from __future__ import annotations

import time

import pytest

from protocols import codec
from tests.firmware.boards import CHIPS, BoardNode, bench_for, board_config, compile_standins
from tests.support.fleet import decoded, node_log, started

INTERVAL_S = 5


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    return compile_standins(tmp_path_factory.mktemp("standins"))


def births(log) -> list[dict]:
    return [b for b in decoded(log, "status") if b["state"] == "online"]


def stamped(log) -> list[dict]:
    return [r for m in decoded(log, "telemetry") for r in m["readings"]]


@pytest.mark.parametrize("chip", CHIPS)
def test_a_power_cut_in_deep_sleep_is_a_power_on_with_a_new_clock(
    tmp_path, bundle, standins, mosquitto, edge, chip
):
    node_id = f"cut-{chip}"
    log = node_log(mosquitto, node_id)
    cfg = board_config(node_id, chip, "parking", mosquitto, "duty-cycled", INTERVAL_S)
    node = BoardNode(tmp_path / node_id, cfg, bench_for(chip, "parking"), standins, bundle)
    with started(node, log):
        log.wait_for(lambda ln: len(stamped(ln)) >= 2, what="two wakes' readings")
        node.wait_for_console("deepsleep", after=len(node.console) - 1)
        cut_ms = int(time.time() * 1000)
        node.power_loss()  # in the middle of the (emulated) deep sleep
        log.wait_for(
            lambda ln: len([r for r in stamped(ln) if r["boot"] == 2]) >= 3, what="boot 2's readings"
        )
    assert [b["reset"] for b in births(log)][-3:] == ["power", "deepsleep", "deepsleep"], node.console_tail(
        40
    )
    after = [r for r in stamped(log) if r["boot"] == 2]
    assert [r["seq"] for r in after][:3] == [0, 1, 2]
    # The clock restarted with the power: the offset measured against the old one is
    # gone. The first reading, taken before the first connect, is stamped with the offset
    # of the boot's own sync (SPEC 3.2 allows it once the node knows it): taken after the
    # cut, within the second NTP's whole seconds (ntptime.time()) leave, where the old
    # offset would have put it a boot's run (two sleeps) earlier, the new clock starting
    # afresh. The node's own clock stamps the next ones, a sleep apart.
    assert [r["time_source"] for r in after[:3]] == ["node", "node", "node"], after
    assert cut_ms - 1000 <= after[0]["ts"] <= after[1]["ts"], (cut_ms, after)
    assert after[2]["ts"] - after[1]["ts"] >= INTERVAL_S * 1000 - 500


@pytest.mark.parametrize("chip", CHIPS)
def test_a_reboot_command_is_a_soft_reset(tmp_path, bundle, standins, mosquitto, chip):
    node_id = f"reboot-{chip}"
    log = node_log(mosquitto, node_id)
    cfg = board_config(node_id, chip, "parking", mosquitto, "always-on", INTERVAL_S)
    node = BoardNode(tmp_path / node_id, cfg, bench_for(chip, "parking"), standins, bundle)
    with started(node, log):
        log.wait_for(lambda ln: births(ln), what="the birth")
        log.publish(f"city/v1/xuhui/caohejing/{node_id}/cmd", codec.encode_command("r-1", "reboot"))
        log.wait_for(lambda ln: len(births(ln)) >= 2, what="the birth after the reboot")
    assert [b["reset"] for b in births(log)][:2] == ["power", "soft"], node.console_tail(40)
    assert [a["ok"] for a in decoded(log, "cmd/ack")] == [True]
