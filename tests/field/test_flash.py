"""`node flash` and `node info` against virtual boards and a real Mosquitto, with the stand-in
node program: live, verified, secrets kept out of output and console, and one clear line for
each way it can fail."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import serial

from field.flash import VerifyError, expected_hashes, verify
from field.node_config import load, parse
from field.serial_board import SerialBoard
from hil.services import free_port
from tests.support.cli import urbansense
from tests.support.node_config import write_config

SECRETS = ("wifi-secret-77", "broker-secret-99")


def flash(board, config: Path, bundle, *extra: str) -> subprocess.CompletedProcess[str]:
    return urbansense(
        "node",
        "flash",
        "--port",
        board.port,
        "--node",
        str(config),
        "--bundle",
        str(bundle.root),
        "--timeout",
        "20",
        *extra,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("urbansense: "), proc.stderr
    return lines[0]


def test_flash_goes_live_and_info_reads_the_node(boards, standin_bundle, mosquitto, tmp_path):
    board = boards()
    config = write_config(
        tmp_path / "p-0001.json", mosquitto.port, wifi={"ssid": "street", "password": SECRETS[0]}
    )
    data = json.loads(config.read_text())
    data["broker"].update(username="p-0001", password=SECRETS[1])  # anonymous broker ignores it
    config.write_text(json.dumps(data))

    proc = flash(board, config, standin_bundle, "--json")
    assert proc.returncode == 0, proc.stderr
    node = json.loads(proc.stdout)["nodes"][0]
    assert node["status"] == "live", node
    assert node["fw"] == "standin-1" and node["boot"] == 0 and node["bundle"] == standin_bundle.version

    # What is on the board is exactly the bundle plus the generated config.
    for name, _digest in standin_bundle.files.items():
        assert (board.flash / name).read_bytes() == (standin_bundle.root / name).read_bytes(), name
    on_board = json.loads((board.flash / "config.json").read_text())
    assert on_board["node"] == "p-0001" and on_board["broker"]["port"] == mosquitto.port
    assert json.loads((board.flash / "bundle.json").read_text())["version"] == standin_bundle.version

    info = urbansense("node", "info", "--port", board.port, "--node", str(config), "--json")
    assert info.returncode == 0, info.stderr
    got = json.loads(info.stdout)
    assert got["node"] == "p-0001"
    assert got["bundle"] == standin_bundle.version
    assert got["boot"] == 0
    assert got["reset_cause"] == "power"  # from the retained birth: the unix port has no machine.reset_cause
    assert got["broker_status"] == "online"
    assert isinstance(got["mem_free"], int) and got["mem_free"] > 0
    assert got["queue"] == {"events": 0, "telemetry": 0}
    assert got["config"]["wifi"]["password"] == "********"
    assert got["config"]["broker"]["password"] == "********"
    table = urbansense("node", "info", "--port", board.port)
    assert table.returncode == 0 and "p-0001" in table.stdout
    mark = len(board.console())
    no_password = urbansense("node", "info", "--port", board.port, "--json")
    assert no_password.returncode == 0, no_password.stderr
    assert "give --node" in json.loads(no_password.stdout)["broker_note"]

    # info restarts the node's program: it boots again. (An info right after another may
    # catch the restart before main.py runs: Ctrl-C at boot lands in the REPL, as on a board.)
    assert board.wait_console("p-0001 boot ", after=mark), board.console()[mark:]
    for secret in SECRETS:
        for text in (
            proc.stdout,
            proc.stderr,
            info.stdout,
            info.stderr,
            table.stdout,
            no_password.stdout,
            board.console(),
        ):
            assert secret not in text


def test_reflash_removes_files_of_the_older_bundle(boards, standin_bundle, mosquitto, tmp_path):
    board = boards()
    board.flash.joinpath("lib").mkdir(exist_ok=True)
    old_manifest = dict(standin_bundle.manifest, files={**standin_bundle.files, "lib/old.mpy": "0" * 64})
    (board.flash / "bundle.json").write_text(json.dumps(old_manifest))
    (board.flash / "lib" / "old.mpy").write_bytes(b"M\x06old")
    (board.flash / "queue").mkdir()
    (board.flash / "queue" / "keep").write_text("readings stay")
    config = write_config(tmp_path / "p-0002.json", mosquitto.port, node="p-0002")
    proc = flash(board, config, standin_bundle)
    assert proc.returncode == 0, proc.stderr
    assert "p-0002 is live" in proc.stdout
    assert not (board.flash / "lib" / "old.mpy").exists()
    assert (board.flash / "queue" / "keep").read_text() == "readings stay"


def test_verification_reads_hashes_back_from_the_board(boards, standin_bundle, mosquitto, tmp_path):
    board = boards()
    config = write_config(tmp_path / "p-0003.json", mosquitto.port, node="p-0003")
    assert flash(board, config, standin_bundle).returncode == 0
    node_config = parse(load(config), "p-0003.json")
    expected = expected_hashes(standin_bundle, node_config)
    with SerialBoard(board.port) as sb:
        sb.enter_raw_repl(soft_reset=True)
        verify(sb, expected)  # as flashed: passes
        (board.flash / "lib" / "mqtt_client.mpy").write_bytes(b"M\x06 corrupted in flash")
        try:
            verify(sb, expected)
            raise AssertionError("a corrupted file passed verification")
        except VerifyError as err:
            assert "lib/mqtt_client.mpy on the board has sha256" in str(err)
        (board.flash / "config.json").unlink()
        try:
            verify(sb, {"config.json": expected["config.json"]})
            raise AssertionError("a missing file passed verification")
        except VerifyError as err:
            assert "config.json is missing on the board" in str(err)


def test_broker_the_laptop_cannot_reach_stops_before_touching_the_board(boards, standin_bundle, tmp_path):
    board = boards()
    dead = free_port()
    config = write_config(tmp_path / "p-0004.json", dead, node="p-0004")
    line = one_line_error(flash(board, config, standin_bundle))
    assert f"broker 127.0.0.1:{dead} refused the connection" in line
    assert not (board.flash / "config.json").exists()


def test_node_that_cannot_reach_its_broker_says_why(boards, standin_bundle, mosquitto, tmp_path):
    board = boards()
    dead = free_port()
    config = write_config(tmp_path / "p-0005.json", dead, node="p-0005")
    proc = urbansense(
        "node",
        "flash",
        "--port",
        board.port,
        "--node",
        str(config),
        "--bundle",
        str(standin_bundle.root),
        "--timeout",
        "4",
        "--watch",
        mosquitto.address,
    )
    line = one_line_error(proc)
    assert line.startswith("urbansense: p-0005 is NOT live: ")
    assert "broker" in line and "no birth message" not in line, line


def test_wrong_credentials_are_named(boards, standin_bundle, mosquitto_factory, tmp_path):
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "p-0006", "right-one"],
        check=True,
        capture_output=True,
    )
    broker = mosquitto_factory(anonymous=False, password_file=passwords)
    board = boards()
    config = write_config(tmp_path / "p-0006.json", broker.port, node="p-0006")
    data = json.loads(config.read_text())
    data["broker"].update(username="p-0006", password="wrong-one")
    config.write_text(json.dumps(data))
    line = one_line_error(flash(board, config, standin_bundle))
    assert "refused the credentials" in line and "wrong-one" not in line


def test_node_without_birth_message_times_out_with_the_last_console_line(boards, mosquitto, tmp_path):
    from field import bundle as bundles

    tree = tmp_path / "silent-fw"
    tree.mkdir()
    (tree / "main.py").write_text(
        "import time\nprint('p-0007 waiting for nothing')\nwhile True:\n    time.sleep(0.1)\n"
    )
    silent = bundles.build(tmp_path / "silent-bundle", firmware=tree)
    board = boards()
    config = write_config(tmp_path / "p-0007.json", mosquitto.port, node="p-0007")
    proc = urbansense(
        "node",
        "flash",
        "--port",
        board.port,
        "--node",
        str(config),
        "--bundle",
        str(silent.root),
        "--timeout",
        "2",
    )
    line = one_line_error(proc)
    assert "no birth message within 2 s (last console line: p-0007 waiting for nothing)" in line


def test_missing_port_busy_port_and_silent_board_are_one_line(boards, standin_bundle, mosquitto, tmp_path):
    config = write_config(tmp_path / "p-0008.json", mosquitto.port, node="p-0008")
    line = one_line_error(
        urbansense(
            "node",
            "flash",
            "--port",
            "/dev/no-such-port",
            "--node",
            str(config),
            "--bundle",
            str(standin_bundle.root),
        )
    )
    assert "port /dev/no-such-port does not exist" in line
    line = one_line_error(urbansense("node", "info", "--port", "/dev/no-such-port"))
    assert "port /dev/no-such-port does not exist" in line

    board = boards()
    holder = serial.Serial(board.port, exclusive=True)
    try:
        line = one_line_error(urbansense("node", "info", "--port", board.port))
        assert f"port {board.port} is in use by another program" in line
    finally:
        holder.close()

    master, slave = os.openpty()
    try:
        line = one_line_error(urbansense("node", "info", "--port", os.ttyname(slave), "--timeout", "1.5"))
        assert "does not answer" in line
    finally:
        os.close(master)
        os.close(slave)


def test_bad_config_is_one_line_naming_the_key(tmp_path, standin_bundle):
    config = write_config(tmp_path / "bad.json", 1883, node="p-0009")
    data = json.loads(config.read_text())
    data["broker"]["port"] = 70000
    config.write_text(json.dumps(data))
    line = one_line_error(urbansense("node", "flash", "--port", "/dev/null", "--node", str(config)))
    assert "bad.json: broker.port:" in line
    data["broker"]["port"] = 1883
    data["intervall_s"] = 60
    config.write_text(json.dumps(data))
    line = one_line_error(urbansense("node", "flash", "--port", "/dev/null", "--node", str(config)))
    assert "intervall_s: Extra inputs are not permitted" in line
    data.pop("intervall_s")
    data["platform"] = "esp32"
    config.write_text(json.dumps(data))
    line = one_line_error(urbansense("node", "flash", "--port", "/dev/null", "--node", str(config)))
    assert "wifi: required on esp32" in line
    line = one_line_error(
        urbansense("node", "flash", "--port", "/dev/null", "--node", str(tmp_path / "missing.json"))
    )
    assert "missing.json: no such file" in line
    line = one_line_error(
        urbansense("node", "flash", "--port", "/dev/null", "--node", str(config), "--broker", "nohostport")
    )
    assert "expected HOST:PORT" in line
