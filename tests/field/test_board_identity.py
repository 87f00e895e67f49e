"""One board is one node: `node flash` and `node provision` read which node a board holds
before writing, refuse to turn it into another node unless asked (`--replace`), and never
flash one board as two nodes of the same run."""

from __future__ import annotations

import json

from tests.support.field_cli import flash, inventory, provision, site
from tests.support.node_config import write_config


def test_flash_over_another_node_needs_replace(boards, standin_bundle, mosquitto, tmp_path):
    board = boards()
    first = write_config(tmp_path / "p-0601.json", mosquitto.port, node="p-0601")
    second = write_config(tmp_path / "p-0602.json", mosquitto.port, node="p-0602")
    bundle = standin_bundle.root
    assert flash(board.port, first, bundle).returncode == 0
    again = flash(board.port, first, bundle, "--json")  # the same node again: no question
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["nodes"][0]["boot"] == 1  # its state stayed: boot 0, then 1
    # What p-0601 left in its offline queue: readings of p-0601, never to go out as p-0602's.
    (board.flash / "queue" / "tm").mkdir(parents=True)
    (board.flash / "queue" / "tm" / "0").write_text('{"seq": 1}\n')

    refused = flash(board.port, second, bundle)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"urbansense: p-0602 is NOT live: the board on {board.port} is node p-0601, not p-0602: "
        "give --replace to flash it as p-0602 (p-0601's queue and state on the board are erased)"
    )
    assert json.loads((board.flash / "config.json").read_text())["node"] == "p-0601"
    assert (board.flash / "queue" / "tm" / "0").exists()

    replaced = flash(board.port, second, bundle, "--replace", "--json")
    assert replaced.returncode == 0, replaced.stderr
    node = json.loads(replaced.stdout)["nodes"][0]
    assert node["status"] == "live" and node["held"] == "p-0601"
    assert node["boot"] == 0  # a node of its own: p-0601's boot counter went with it
    assert not (board.flash / "queue").exists()
    assert json.loads((board.flash / "config.json").read_text())["node"] == "p-0602"
    again = flash(board.port, second, bundle, "--json")  # now the board is p-0602 itself
    assert again.returncode == 0 and json.loads(again.stdout)["nodes"][0]["held"] == "p-0602"


def test_two_rows_on_one_port_are_not_two_live_nodes(boards, standin_bundle, mosquitto, tmp_path):
    board = boards()
    fleet = inventory(
        tmp_path / "fleet.csv",
        [f"p-0611,xuhui,caohejing,parking,{board.port}", f"p-0612,xuhui,caohejing,parking,{board.port}"],
    )
    # --replace does not make one board two nodes of the same run either.
    proc = provision(
        fleet,
        standin_bundle.root,
        tmp_path / "results",
        "--replace",
        "--json",
        defaults=site(tmp_path / "site.json", mosquitto.port),
    )
    assert proc.returncode == 1, proc.stderr
    status = {n["node"]: (n["status"], n["reason"]) for n in json.loads(proc.stdout)["nodes"]}
    assert status["p-0611"][0] == "live"
    assert status["p-0612"] == (
        "failed",
        f"the board on {board.port} is p-0611, flashed earlier in this run: connect p-0612's own "
        "board (one board cannot be two nodes)",
    )
    assert json.loads((board.flash / "config.json").read_text())["node"] == "p-0611"
