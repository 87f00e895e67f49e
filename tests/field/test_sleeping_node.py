"""A duty-cycled node is reachable whenever a technician holds it: with the real firmware
on a virtual board (no reset line: the tool waits for the next wake, whose break-in window
it finds), `node info` and `node flash` succeed every time, and a fleet of sleeping nodes
can be provisioned again."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import urbansense
from tests.support.field_cli import flash, inventory, provision, site
from tests.support.node_config import write_config

TRIES = 10
INTERVAL_S = 2  # the node sleeps about this long between wakes


@pytest.mark.slow
def test_info_and_flash_reach_a_sleeping_node_every_time(boards, firmware_bundle, mosquitto, tmp_path):
    board = boards()
    config = write_config(
        tmp_path / "l-0801.json",
        mosquitto.port,
        node="l-0801",
        kind="leak",
        schedule="duty-cycled",
        interval_s=INTERVAL_S,
    )
    first = flash(board.port, config, firmware_bundle)
    assert first.returncode == 0, first.stderr
    assert board.wait_console("l-0801 deepsleep"), board.console()[-2000:]

    for attempt in range(TRIES):
        mark = len(board.console())
        info = urbansense("node", "info", "--port", board.port, "--node", str(config), "--json")
        assert info.returncode == 0, (attempt, info.stderr)
        got = json.loads(info.stdout)
        assert got["node"] == "l-0801" and got["config"]["schedule"] == "duty-cycled", got
        # The cause the node last reported (the unix port has no machine.reset_cause()):
        # caught at a wake's break-in window its boot goes on, caught in the middle of its
        # work it starts a new one after the soft reset; never as after a crash.
        assert got["reset_cause"] in ("power", "deepsleep", "soft"), got
        # ... and put back to work: it sleeps again.
        assert board.wait_console("l-0801 deepsleep", after=mark), board.console()[mark:]

    for attempt in range(TRIES):
        again = flash(board.port, config, firmware_bundle, "--json")
        assert again.returncode == 0, (attempt, again.stderr)
        node = json.loads(again.stdout)["nodes"][0]
        assert node["status"] == "live" and node["held"] == "l-0801", node


@pytest.mark.slow
def test_a_sleeping_fleet_can_be_provisioned_again(boards, firmware_bundle, mosquitto, tmp_path):
    a, b = boards("a"), boards("b")
    fleet = inventory(
        tmp_path / "fleet.csv",
        [
            f"p-0811,xuhui,caohejing,parking,{a.port},{INTERVAL_S},duty-cycled",
            f"m-0812,xuhui,caohejing,manhole,{b.port},{INTERVAL_S},duty-cycled",
        ],
        header="node,district,zone,kind,port,interval_s,schedule",
    )
    defaults = site(tmp_path / "site.json", mosquitto.port)
    for run in range(2):  # the second run finds both asleep most of the time
        proc = provision(fleet, firmware_bundle, tmp_path / "results", defaults=defaults)
        assert proc.returncode == 0, (run, proc.stdout, proc.stderr)
        assert "2 of 2 node(s) live" in proc.stdout
