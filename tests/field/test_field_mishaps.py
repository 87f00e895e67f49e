"""What goes wrong in the field, said in words a technician can act on: a board pulled in
the middle of the copy, a threshold of another kind, a missing port (with the command that
lists ports), what `node info` shows of a node that has counted nothing yet, and reasons
with brackets in them."""

from __future__ import annotations

import json
import subprocess

from field.bundle import ON_DEVICE_MANIFEST
from tests.support.cli import URBANSENSE, urbansense
from tests.support.field_cli import flash, flash_args, inventory, provision, site
from tests.support.node_config import write_config
from tests.support.waiting import wait_for


def pull_during_the_copy(board, config, bundle) -> subprocess.CompletedProcess[str] | None:
    """Flash, and pull the cable once the copy has begun. The board is frozen first, so the
    flasher can go no further with it; it is pulled only if the copy's last write (the
    bundle manifest) has not happened yet. None: the whole copy beat the test to it."""
    proc = subprocess.Popen(
        [URBANSENSE, *flash_args(board.port, config, bundle.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        copied = [board.flash / name for name in bundle.files]
        wait_for(
            lambda: any(p.exists() for p in copied), timeout=120, interval=0.01, what="the copy to begin"
        )
        board.freeze()  # the bridge stops relaying: no further answer reaches the flasher
        mid_copy = not (board.flash / ON_DEVICE_MANIFEST).exists()
        board.stop()  # the cable pulled: the port is gone
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err) if mid_copy else None


def test_a_board_pulled_during_the_copy(boards, standin_bundle, mosquitto, tmp_path):
    config = write_config(tmp_path / "p-0901.json", mosquitto.port, node="p-0901")
    for attempt in range(3):  # a loaded machine can let the whole copy through before the pull
        proc = pull_during_the_copy(boards(f"board-{attempt}"), config, standin_bundle)
        if proc is not None:
            break
    assert proc is not None, "the copy finished before the cable could be pulled, three times"
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("urbansense: p-0901 is NOT live: board lost during the copy"), line
    assert line.endswith(": reconnect it and flash again"), line
    assert "Errno" not in line


def test_a_threshold_of_another_kind_is_refused_before_the_copy(boards, standin_bundle, mosquitto, tmp_path):
    board = boards()
    config = write_config(tmp_path / "p-0902.json", mosquitto.port, node="p-0902", thresholds={"pm25": 75})
    proc = flash(board.port, config, standin_bundle.root)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"urbansense: {config}: thresholds.pm25: no such threshold for parking (its thresholds: "
        "battery_low_v, occupied_delta_ut)"
    )
    assert not (board.flash / "main.py").exists()  # the board was not touched


def test_ports_are_listed_and_a_missing_one_says_how(standin_bundle, tmp_path):
    listed = urbansense("node", "ports", "--json")
    assert listed.returncode == 0, listed.stderr
    ports = json.loads(listed.stdout)["ports"]
    assert all(set(p) == {"port", "description", "usb", "serial_number"} for p in ports)
    config = write_config(tmp_path / "p-0903.json", 1883, node="p-0903")
    proc = flash("/dev/ttyUSB9", config, standin_bundle.root, "--no-wait")
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "port /dev/ttyUSB9 does not exist: is the board plugged in? (list ports with: urbansense node ports)"
        )
    )


def test_info_shows_counters_even_before_the_first(boards, standin_bundle, mosquitto, tmp_path):
    board = boards()
    config = write_config(tmp_path / "p-0904.json", mosquitto.port, node="p-0904")
    flashed = flash(board.port, config, standin_bundle.root)
    assert flashed.returncode == 0, flashed.stderr
    info = urbansense("node", "info", "--port", board.port, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["counters"] == {}
    table = urbansense("node", "info", "--port", board.port)
    assert table.returncode == 0, table.stderr
    assert any("counters" in ln and "none counted yet" in ln for ln in table.stdout.splitlines()), (
        table.stdout
    )
    (board.flash / "state" / "counters.json").write_text(json.dumps({"dropped": 3}))
    info = urbansense("node", "info", "--port", board.port, "--json")
    assert json.loads(info.stdout)["counters"] == {"dropped": 3}


def test_messages_in_tables_keep_their_brackets(standin_bundle, tmp_path):
    """A reason with brackets (the slug pattern) prints as it is, not as rich markup."""
    fleet = inventory(
        tmp_path / "fleet.csv",
        [
            "P_BAD,xuhui,caohejing,parking,/dev/no-such-port",
            "p-0905,xuhui,caohejing,parking,/dev/no-such-port",
        ],
    )
    defaults = site(tmp_path / "site.json", 1883)
    proc = provision(fleet, standin_bundle.root, tmp_path / "results", "--no-wait", defaults=defaults)
    assert proc.returncode == 1
    assert "'^[a-z0-9-]{1,32}$'" in proc.stdout, proc.stdout
