"""Commands on `cmd` (SPEC section 7) to running virtual nodes through a real broker."""

from __future__ import annotations

import json

import pytest

from protocols import codec
from tests.support.fleet import decoded, make_node, node_log, readings, started


def cmd_topic(node_id: str) -> str:
    return f"city/v1/xuhui/caohejing/{node_id}/cmd"


def acks(log, cmd_id: str) -> list[dict]:
    return [a for a in decoded(log, "cmd/ack") if a["id"] == cmd_id]


def send(log, node_id: str, cmd_id: str, cmd: str, args: dict | None = None) -> dict:
    before = len(acks(log, cmd_id))
    log.publish(cmd_topic(node_id), codec.encode_command(cmd_id, cmd, args))
    log.wait_for(lambda ln: len(acks(ln, cmd_id)) > before, what=f"ack of {cmd_id}")
    return acks(log, cmd_id)[-1]


def test_set_is_acked_persisted_and_survives_power_loss(tmp_path, bundle, mosquitto):
    node_id = "cmd-p1"
    log = node_log(mosquitto, node_id)
    node = make_node(tmp_path, bundle, mosquitto, "parking", node_id, "always-on", 0.5)
    with started(node, log):
        node.wait_for_console("connected")
        ack = send(log, node_id, "c-1", "set", {"interval_s": 7, "thresholds": {"occupied_delta_ut": 20}})
        assert ack["ok"] is True
        assert ack["result"] == {"interval_s": 7, "thresholds": {"occupied_delta_ut": 20}}
        # A repeated delivery of the same id is acked again but not run twice.
        again = send(log, node_id, "c-1", "set", {"interval_s": 9})
        assert again["ok"] is True and again["result"]["interval_s"] == 7
        assert sum("cmd c-1 set" in line for line in node.console) == 1
        bad = send(log, node_id, "c-2", "set", {"thresholds": {"pm25": 5}})
        assert bad["ok"] is False and bad["error"].startswith("unknown_field")
        # config.json as provisioning wrote it stays intact; the change lives in state/.
        assert json.loads((node.flash_dir / "config.json").read_text())["interval_s"] == 0.5
        node.power_loss()
        node.wait_for_console("boot 2")
        got = send(log, node_id, "c-3", "get")
        assert got["boot"] == 2
        assert got["result"]["interval_s"] == 7
        assert got["result"]["thresholds"]["occupied_delta_ut"] == 20
        births = [b for b in decoded(log, "status") if b["state"] == "online"]
        assert births[-1]["interval_s"] == 7 and births[-1]["reset"] == "power"
        pong = send(log, node_id, "c-4", "ping")
        assert pong["ok"] is True and "uptime_s" in pong["result"]
        before = len(readings(log))
        sample = send(log, node_id, "c-5", "sample")
        assert sample["ok"] is True
        log.wait_for(lambda ln: len(readings(ln)) > before, what="the reading asked for")
        reboot = send(log, node_id, "c-6", "reboot")
        assert reboot["ok"] is True
        log.wait_for(
            lambda ln: any(b["state"] == "online" and b["reset"] == "soft" for b in decoded(ln, "status")),
            what="birth after reboot",
        )
        assert [b for b in decoded(log, "status") if b["reset"] == "soft"][0]["boot"] == 3


def test_duty_cycled_node_reads_commands_that_waited_at_the_broker(tmp_path, bundle, mosquitto):
    node_id = "cmd-m1"
    log = node_log(mosquitto, node_id)
    node = make_node(tmp_path, bundle, mosquitto, "manhole", node_id, "duty-cycled", 1.5)
    with started(node, log):
        node.wait_for_console("deepsleep")
        # Published while the node sleeps: the persistent session keeps it (QoS 1).
        log.publish(cmd_topic(node_id), codec.encode_command("c-9", "ping"))
        log.wait_for(lambda ln: acks(ln, "c-9"), what="ack after the next wake")
        assert acks(log, "c-9")[0]["ok"] is True


def test_pin_wake_reports_a_leak_long_before_the_next_interval(tmp_path, bundle, mosquitto):
    node_id = "wake-l1"
    log = node_log(mosquitto, node_id)
    node = make_node(tmp_path, bundle, mosquitto, "leak", node_id, "duty-cycled", 3600)
    node.set_stimulus("wet", False)
    with started(node, log):
        node.wait_for_console("deepsleep")
        node.set_stimulus("wet", True)
        node.wake()
        log.wait_for(lambda ln: ln.on("/event"), what="leak event after the pin wake")
        ev = decoded(log, "event")
        assert [(e["event"], e["state"]) for e in ev] == [("leak", True)]
        assert node.stats.starts == 2  # woke once: the hour-long sleep was cut short


@pytest.mark.parametrize("schedule", ["always-on", "duty-cycled"])
def test_a_command_acked_to_the_broker_survives_a_power_cut_before_it_runs(
    schedule, tmp_path, bundle, mosquitto
):
    # The broker forgets a command once the node has PUBACKed it: from then on only the
    # node's flash holds it. Cut the power right there, before it runs.
    node_id = f"cmd-cut-{schedule[0]}"
    log = node_log(mosquitto, node_id)
    node = make_node(tmp_path, bundle, mosquitto, "parking", node_id, schedule, 1.0)
    with started(node, log):
        node.wait_for_console("connected")
        node.cut_power_at("commands")
        ack = send(log, node_id, "c-7", "set", {"interval_s": 11})
        assert node.stats.power_cuts == 1
        assert any("power cut at commands" in line for line in node.console)
        assert ack["ok"] is True and ack["boot"] == 2  # run after power came back
        assert ack["result"] == {"interval_s": 11}
        assert sum("cmd c-7 set" in line for line in node.console) == 1
        got = send(log, node_id, "c-8", "get")
        assert got["result"]["interval_s"] == 11
    assert len(acks(log, "c-7")) == 1


def test_a_node_that_hangs_is_reset_by_its_watchdog_and_its_command_still_runs(tmp_path, bundle, mosquitto):
    node_id = "cmd-hang-a"
    log = node_log(mosquitto, node_id)
    node = make_node(tmp_path, bundle, mosquitto, "parking", node_id, "always-on", 1.0)
    with started(node, log):
        node.wait_for_console("connected")
        node.hang_at("commands")  # after the PUBACK: only the node's flash has it now
        ack = send(log, node_id, "c-h", "set", {"interval_s": 13})
        assert node.stats.watchdog_resets == 1
        assert any("hung at commands" in line for line in node.console)
        assert ack["ok"] is True and ack["boot"] == 2
        assert sum("cmd c-h set" in line for line in node.console) == 1
        births = [b for b in decoded(log, "status") if b["state"] == "online"]
        assert births[-1]["reset"] == "watchdog" and births[-1]["boot"] == 2
        assert node.stats.crashes == 0
