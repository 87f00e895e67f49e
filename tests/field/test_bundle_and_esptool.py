"""The bundle (compiled, hashed, refused when changed after the build) and the esptool
command lines. No ESP32 is attached here: the esptool tests check the command built and that
esptool's own parser accepts it (it then fails only at opening the missing port)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from field import bundle as bundles
from field.esptool_cmd import EsptoolError, erase_command, flash_image, write_command
from tests.support.cli import urbansense


def test_bundle_compiles_everything_but_main_and_hashes_it(standin_bundle):
    files = standin_bundle.files
    assert "main.py" in files
    assert "lib/mqtt_client.mpy" in files
    assert {"protocols/codec.mpy", "protocols/topics.mpy", "protocols/thresholds.mpy"} <= set(files)
    assert "protocols/decoder.mpy" not in files and "protocols/catalog.mpy" not in files
    assert not any(name.endswith(".py") and name != "main.py" for name in files)
    for name, digest in files.items():
        assert hashlib.sha256((standin_bundle.root / name).read_bytes()).hexdigest() == digest
    # A .mpy file starts with 'M' and the bytecode version (6 since MicroPython 1.19).
    assert (standin_bundle.root / "protocols/codec.mpy").read_bytes()[:2] == b"M\x06"
    manifest = json.loads((standin_bundle.root / "manifest.json").read_text())
    assert manifest["version"] == standin_bundle.version
    assert manifest["version"].split("+")[1] in standin_bundle.version


def test_version_changes_with_the_content(standin_bundle, tmp_path):
    tree = tmp_path / "fw"
    (tree / "lib").mkdir(parents=True)
    shutil.copy(standin_bundle.root / "main.py", tree / "main.py")
    (tree / "main.py").write_text((tree / "main.py").read_text() + "\n# changed\n")
    (tree / "node").mkdir()
    (tree / "node" / "version.py").write_text('FW_VERSION = "2.3.4"\n')
    other = bundles.build(tmp_path / "out", firmware=tree)
    assert other.version.startswith("2.3.4+")
    assert other.version.split("+")[1] != standin_bundle.version.split("+")[1]


def test_tampered_bundle_fails_verification(standin_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(standin_bundle.root, copy)
    bundles.load(copy)  # intact: accepted
    target = copy / "lib" / "mqtt_client.mpy"
    target.write_bytes(target.read_bytes()[:-1] + b"\x00")
    with pytest.raises(bundles.BundleError, match="lib/mqtt_client.mpy changed after the build"):
        bundles.load(copy)


def test_tampered_bundle_is_refused_by_flash_in_one_line(standin_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(standin_bundle.root, copy)
    (copy / "main.py").write_text("print('not what was built')\n")
    config = tmp_path / "node.json"
    config.write_text(
        json.dumps(
            {
                "node": "p-0001",
                "district": "xuhui",
                "zone": "caohejing",
                "kind": "parking",
                "platform": "sim",
                "broker": {"host": "127.0.0.1", "port": 1883},
            }
        )
    )
    proc = urbansense(
        "node", "flash", "--port", "/dev/null", "--node", str(config), "--bundle", str(copy), "--no-wait"
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"urbansense: bundle {copy} fails verification: main.py changed after the build "
        "(rebuild with `urbansense node build`)"
    ]


def test_invalid_micropython_is_refused_at_build(tmp_path):
    tree = tmp_path / "fw"
    (tree / "node").mkdir(parents=True)
    (tree / "main.py").write_text("import node.broken\n")
    (tree / "node" / "broken.py").write_text("def f(:\n    pass\n")
    with pytest.raises(bundles.BundleError, match="mpy-cross rejected .*broken.py"):
        bundles.build(tmp_path / "out", firmware=tree)


def test_build_command_writes_a_bundle(tmp_path, repo_root):
    if not (repo_root / "firmware" / "main.py").exists():
        proc = urbansense("node", "build", "--out", str(tmp_path / "b"))
        assert proc.returncode == 1
        assert "no main.py" in proc.stderr and "Traceback" not in proc.stderr
        return
    proc = urbansense("node", "build", "--out", str(tmp_path / "b"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    loaded = bundles.load(Path(out["bundle"]))
    assert loaded.version == out["version"] and len(loaded.files) == out["files"]


@pytest.mark.parametrize(
    "chip,offset",
    [("esp32", "0x1000"), ("esp32s2", "0x1000"), ("esp32s3", "0x0"), ("esp32c3", "0x0"), ("ESP32-C3", "0x0")],
)
def test_write_command_uses_the_chip_offset(chip, offset, tmp_path):
    image = tmp_path / "micropython.bin"
    cmd = write_command(chip, "/dev/ttyUSB0", image)
    assert cmd[1:3] == ["-m", "esptool"]
    assert cmd[cmd.index("--chip") + 1] == chip.lower().replace("-", "")
    assert cmd[cmd.index("--port") + 1] == "/dev/ttyUSB0"
    assert cmd[-3:] == ["--compress", offset, str(image)]
    assert cmd[cmd.index("write-flash") - 2 : cmd.index("write-flash")] == ["--baud", "460800"]
    assert erase_command(chip, "/dev/ttyUSB0")[-1] == "erase-flash"


@pytest.mark.parametrize("chip", ["esp32", "esp32s3", "esp32c3"])
def test_esptool_parser_accepts_the_commands(chip, tmp_path):
    image = tmp_path / "micropython.bin"
    image.write_bytes(b"\xe9" + bytes(255))
    for cmd in (erase_command(chip, "/dev/no-such-tty"), write_command(chip, "/dev/no-such-tty", image)):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        text = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "No such option" not in text and "Usage:" not in text, text
        assert "Could not open /dev/no-such-tty" in text, text


def test_unknown_chip_and_missing_image_are_one_line(tmp_path):
    with pytest.raises(EsptoolError, match="unknown chip 'esp8266'"):
        write_command("esp8266", "/dev/ttyUSB0", tmp_path / "x.bin")
    with pytest.raises(EsptoolError, match="does not exist"):
        flash_image("esp32", "/dev/ttyUSB0", tmp_path / "missing.bin")


def test_flash_with_image_on_missing_port_is_one_line(tmp_path):
    image = tmp_path / "micropython.bin"
    image.write_bytes(b"\xe9" + bytes(255))
    config = tmp_path / "node.json"
    config.write_text(
        json.dumps(
            {
                "node": "a-0001",
                "district": "xuhui",
                "zone": "caohejing",
                "kind": "air",
                "platform": "esp32",
                "wifi": {"ssid": "street", "password": "hunter22"},
                "broker": {"host": "127.0.0.1"},
            }
        )
    )
    proc = urbansense(
        "node",
        "flash",
        "--port",
        "/dev/no-such-tty",
        "--node",
        str(config),
        "--image",
        str(image),
        "--chip",
        "esp32s3",
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("urbansense: esptool") and "Could not open /dev/no-such-tty" in last
    assert "Traceback" not in proc.stderr and "hunter22" not in proc.stdout + proc.stderr
