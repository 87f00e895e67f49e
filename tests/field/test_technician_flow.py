"""The technician's whole flow with the real firmware: `node build`, `node flash` onto a
virtual board (no --image), hashes read back, reset, the birth message at a real Mosquitto,
readings that decode as protocol v1, then `node info`. And the reasons the real firmware
gives when it cannot go live."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from field import bundle as bundles
from hil.services import free_port
from protocols.decoder import decode
from tests.support.cli import urbansense
from tests.support.node_config import write_config


class Listener:
    """An independent subscriber: what reached the broker, as operations would see it."""

    def __init__(self, broker, topic: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.got = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flow-listener")
        self.client.on_message = lambda c, u, msg: (self.messages.append(msg), self.got.set())
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_build_flash_live_and_info_with_the_real_firmware(boards, firmware_bundle, mosquitto, tmp_path):
    board = boards()
    config = write_config(tmp_path / "a-0301.json", mosquitto.port, node="a-0301", kind="air", interval_s=0.5)
    listener = Listener(mosquitto, "city/v1/xuhui/caohejing/a-0301/telemetry")
    try:
        proc = urbansense(
            "node",
            "flash",
            "--port",
            board.port,
            "--node",
            str(config),
            "--bundle",
            str(firmware_bundle),
            "--timeout",
            "30",
            "--json",
        )
        assert proc.returncode == 0, proc.stderr
        node = json.loads(proc.stdout)["nodes"][0]
        assert node["status"] == "live", node
        assert node["fw"] == bundles.firmware_version()
        assert node["reset"] == "power"
        assert "a-0301 connected 127.0.0.1:%d" % mosquitto.port in board.console()

        assert listener.got.wait(60), board.console()
        msg = listener.messages[0]
        # The receiver's clock: a reading queued before the node's first NTP sync goes out
        # with its ts once the node knows the offset (SPEC 3.2).
        decoded = decode(msg.topic, msg.payload, int(time.time() * 1000))
        assert decoded["node"] == "a-0301" and decoded["kind"] == "air"
    finally:
        listener.stop()

    info = urbansense("node", "info", "--port", board.port, "--json")
    assert info.returncode == 0, info.stderr
    got = json.loads(info.stdout)
    assert got["node"] == "a-0301"
    assert got["firmware"] == bundles.firmware_version()
    assert got["bundle"] == json.loads((firmware_bundle / "manifest.json").read_text())["version"]
    assert got["reset_cause"] == "power" and got["broker_status"] == "online"
    assert got["mem_free"] > 0
    assert set(got["queue"]) == {"events", "telemetry"}
    assert got["config"]["kind"] == "air"


def test_real_firmware_that_cannot_reach_its_broker(boards, firmware_bundle, mosquitto, tmp_path):
    board = boards()
    config = write_config(tmp_path / "l-0302.json", free_port(), node="l-0302", kind="leak")
    proc = urbansense(
        "node",
        "flash",
        "--port",
        board.port,
        "--node",
        str(config),
        "--bundle",
        str(firmware_bundle),
        "--timeout",
        "4",
        "--watch",
        mosquitto.address,
    )
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(
        "urbansense: l-0302 is NOT live: the broker refused the connection from the node"
    ), line


def test_real_firmware_refusing_its_config(boards, firmware_bundle, mosquitto, tmp_path):
    board = boards()
    config = write_config(
        tmp_path / "m-0303.json",
        mosquitto.port,
        node="m-0303",
        kind="manhole",
        # The laptop checks the names of a kind's thresholds, not how large they may be.
        thresholds={"tilt_deg": 1e12},
    )
    proc = urbansense(
        "node",
        "flash",
        "--port",
        board.port,
        "--node",
        str(config),
        "--bundle",
        str(firmware_bundle),
        "--timeout",
        "20",
    )
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("urbansense: m-0303 is NOT live: the node refused its config: "), line
    assert "thresholds" in line
    # The board stays in its REPL (as a real one does when main.py ends): info still works.
    info = urbansense("node", "info", "--port", board.port, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["node"] == "m-0303"
