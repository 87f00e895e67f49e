"""`node provision` over an inventory of virtual boards: one node fails (wrong port), the
results say so in CSV and JSON, and resumed runs redo only what is not live yet."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from field.inventory import read
from field.node_config import ConfigError
from tests.support.cli import urbansense
from tests.support.dialogue import Dialogue
from tests.support.field_cli import inventory, provision_args, site, statuses
from tests.support.field_cli import provision as provision_fleet

HEADER = "node,district,zone,kind,port,interval_s,broker.port\n"


def soft_reboots(board) -> int:
    return board.console().count("soft reboot")


def provision(inventory: Path, defaults: Path, bundle, results: Path, *extra: str):
    return urbansense(
        "node",
        "provision",
        "--inventory",
        str(inventory),
        "--defaults",
        str(defaults),
        "--bundle",
        str(bundle.root),
        "--results",
        str(results),
        "--timeout",
        "60",
        *extra,
    )


def test_fleet_with_a_wrong_port_then_resumed_runs(boards, standin_bundle, mosquitto, tmp_path):
    a, b, c = boards("a"), boards("b"), boards("c")
    defaults = tmp_path / "site.json"
    defaults.write_text(
        json.dumps(
            {
                "platform": "sim",
                "schedule": "always-on",
                "broker": {"host": "127.0.0.1", "port": 1},
                "wifi": {"ssid": "street", "password": "site-secret-5"},
            }
        )
    )
    inventory = tmp_path / "fleet.csv"
    inventory.write_text(
        HEADER
        + f"p-0101,xuhui,caohejing,parking,{a.port},,{mosquitto.port}\n"
        + f"l-0102,xuhui,caohejing,leak,/dev/no-such-port,30,{mosquitto.port}\n"
        + f"m-0103,xuhui,caohejing,manhole,{b.port},2,{mosquitto.port}\n"
    )
    results = tmp_path / "results"

    first = provision(inventory, defaults, standin_bundle, results)
    assert first.returncode == 1, first.stderr
    doc = json.loads((results / "results.json").read_text())
    status = {n["node"]: n["status"] for n in doc["nodes"]}
    assert status == {"p-0101": "live", "l-0102": "failed", "m-0103": "live"}
    assert doc["live"] == 2 and doc["failed"] == 1
    failed = next(n for n in doc["nodes"] if n["node"] == "l-0102")
    assert "port /dev/no-such-port does not exist" in failed["reason"]
    with open(results / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["node"], r["status"]) for r in rows] == [
        ("p-0101", "live"),
        ("l-0102", "failed"),
        ("m-0103", "live"),
    ]
    assert json.loads((b.flash / "config.json").read_text())["interval_s"] == 2
    assert json.loads((b.flash / "config.json").read_text())["kind"] == "manhole"
    assert (
        "site-secret-5" not in (results / "results.csv").read_text() + (results / "results.json").read_text()
    )
    assert "site-secret-5" not in first.stdout + first.stderr

    # Resume with the port still wrong: the live nodes are not touched, the failed one fails again.
    before = soft_reboots(a), soft_reboots(b)
    again = provision(inventory, defaults, standin_bundle, results, "--resume")
    assert again.returncode == 1
    assert "2 node(s) already live, 1 to do" in again.stderr
    assert (soft_reboots(a), soft_reboots(b)) == before
    assert len(json.loads((results / "results.json").read_text())["nodes"]) == 3

    # The technician fixes the port: the resumed run does only that node and succeeds.
    inventory.write_text(inventory.read_text().replace("/dev/no-such-port", c.port))
    fixed = provision(inventory, defaults, standin_bundle, results, "--resume", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert [n["node"] for n in json.loads(fixed.stdout)["nodes"]] == ["l-0102"]
    assert (soft_reboots(a), soft_reboots(b)) == before
    doc = json.loads((results / "results.json").read_text())
    assert {n["node"]: n["status"] for n in doc["nodes"]} == {
        "p-0101": "live",
        "l-0102": "live",
        "m-0103": "live",
    }
    assert json.loads((c.flash / "config.json").read_text())["node"] == "l-0102"


def test_inventory_rows_with_errors_fail_alone(tmp_path):
    inventory = tmp_path / "fleet.csv"
    inventory.write_text(
        "node,district,zone,kind,port,broker.port\n"
        "p-0201,xuhui,caohejing,parking,/dev/ttyUSB0,1883\n"
        "P_BAD,xuhui,caohejing,parking,/dev/ttyUSB1,1883\n"
        "p-0203,xuhui,caohejing,bicycle,/dev/ttyUSB2,1883\n"
        "p-0204,xuhui,caohejing,parking,/dev/ttyUSB3,not-a-port\n"
        "p-0201,xuhui,caohejing,parking,/dev/ttyUSB4,1883\n"
    )
    rows = read(inventory, {"platform": "sim", "broker": {"host": "127.0.0.1"}})
    assert rows[0].config is not None and rows[0].config.broker.port == 1883
    assert "fleet.csv line 3: node:" in rows[1].error
    assert "fleet.csv line 4: kind:" in rows[2].error
    assert "broker.port: 'not-a-port' is not a number" in rows[3].error
    assert "node p-0201 appears twice" in rows[4].error


def test_inventory_without_required_columns_is_refused(tmp_path):
    inventory = tmp_path / "fleet.csv"
    inventory.write_text("node,district,kind\np-1,xuhui,parking\n")
    with pytest.raises(ConfigError, match="missing column\\(s\\) zone, port"):
        read(inventory, {})
    proc = urbansense("node", "provision", "--inventory", str(inventory))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"urbansense: {inventory}: missing column(s) zone, port (need node, district, zone, kind, port)"
    ]
    proc = urbansense("node", "provision", "--inventory", str(tmp_path / "none.csv"))
    assert proc.returncode == 1 and "none.csv: no such file" in proc.stderr


def test_field_examples_are_valid(repo_root):
    from field.node_config import load, parse

    field = repo_root / "deploy" / "field"
    rows = read(field / "fleet.example.csv", load(field / "site.example.json"))
    assert rows and all(r.config is not None for r in rows), [r.error for r in rows]
    assert {r.config.platform for r in rows} == {"esp32", "rp2"}
    assert parse(load(field / "node.example.json"), "node.example.json").node == "p-0001"


def plug(cable: Path, board) -> None:
    """Plug `board` into the one cable: the port name now leads to that board."""
    cable.unlink(missing_ok=True)
    cable.symlink_to(board.port)


def test_one_cable_waits_for_each_board(boards, standin_bundle, mosquitto, tmp_path):
    """One cable, every row on its port: the tool waits for each board, and a board that
    is still the last one (Enter pressed, boards not swapped) is asked about, not flashed."""
    a, b, c = boards("a"), boards("b"), boards("c")
    cable = tmp_path / "ttyUSB0"
    fleet = inventory(
        tmp_path / "fleet.csv", [f"p-040{i},xuhui,caohejing,parking,{cable}" for i in (1, 2, 3)]
    )
    results = tmp_path / "results"
    defaults = site(tmp_path / "site.json", mosquitto.port)
    args = [*provision_args(fleet, standin_bundle.root, results, defaults=defaults), "--one-cable"]

    # Enter for the first, skip the second, then stop: one live, one skipped, one not done.
    first = Dialogue(args)
    first.wait_for("connect p-0401 to")
    plug(cable, a)
    first.answer("")
    first.wait_for("connect p-0402 to")
    first.answer("s")
    first.wait_for("connect p-0403 to")
    first.answer("q")
    assert first.finish() == 1, first.stderr
    assert statuses(results) == {"p-0401": "live", "p-0402": "skipped"}
    assert json.loads((a.flash / "config.json").read_text())["node"] == "p-0401"

    # Resume: p-0401 is not asked for. Enter with p-0401's board still on the cable is asked
    # about again (it may be replaced: it was flashed in an earlier run); then the right one.
    second = Dialogue([*args, "--resume"])
    second.wait_for("connect p-0402 to")
    second.answer("")
    second.wait_for("the board on %s is node p-0401, not p-0402" % cable)
    second.wait_for("connect p-0402's board to")
    assert "r: replace p-0401" in second.stderr
    plug(cable, b)
    second.answer("")
    # p-0403: Enter without swapping: the board is p-0402, flashed a moment ago.
    second.wait_for("connect p-0403 to")
    second.answer("")
    second.wait_for("is p-0402, flashed earlier in this run")
    second.wait_for("connect p-0403's board to")
    plug(cable, c)
    second.answer("")
    assert second.finish() == 0, second.stderr
    assert "connect p-0401" not in second.stderr
    assert statuses(results) == {"p-0401": "live", "p-0402": "live", "p-0403": "live"}
    assert [json.loads((x.flash / "config.json").read_text())["node"] for x in (a, b, c)] == [
        "p-0401",
        "p-0402",
        "p-0403",
    ]
    assert "3 of 3 node(s) live" in second.stdout


def test_one_cable_never_swapped_flashes_one_node(boards, standin_bundle, mosquitto, tmp_path):
    """Enter pressed for every row, the same board on the cable all along: one node live, the
    others asked about until the input ends, and the summary says so."""
    board = boards("bench")
    fleet = inventory(
        tmp_path / "fleet.csv", [f"p-050{i},xuhui,caohejing,parking,{board.port}" for i in (1, 2, 3)]
    )
    results = tmp_path / "results"
    defaults = site(tmp_path / "site.json", mosquitto.port)
    proc = provision_fleet(
        fleet, standin_bundle.root, results, "--one-cable", defaults=defaults, stdin="\n\n\n"
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("is p-0501, flashed earlier in this run") == 2
    assert "1 of 3 node(s) live" in proc.stdout
    assert statuses(results) == {"p-0501": "live"}
    assert json.loads((board.flash / "config.json").read_text())["node"] == "p-0501"
