"""`urbansense sim`: a fleet of real-firmware virtual nodes against a real Mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.sim import KINDS, Fleet
from protocols.topics import is_slug
from tests.support.broker_log import BrokerLog


def urbansense(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # The installed console script, as a user runs it.
    script = Path(sys.executable).parent / "urbansense"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=timeout)


def test_fleet_of_every_kind_publishes_and_summarises(mosquitto, tmp_path):
    log = BrokerLog(mosquitto.host, mosquitto.port, ["city/v1/xuhui/sim-test/#"])
    try:
        proc = urbansense(
            "sim",
            "--broker",
            mosquitto.address,
            "--nodes",
            "8",
            "--district",
            "xuhui",
            "--zone",
            "sim-test",
            "--interval",
            "0.5",
            "--duration",
            "5",
            "--seed",
            "3",
            "--dir",
            str(tmp_path),
            "--json",
        )
        assert proc.returncode == 0, proc.stderr + proc.stdout
        out = json.loads(proc.stdout)
        senders = {m.topic.split("/")[4] for m in log.on("/telemetry")}
    finally:
        log.close()
    assert out["total"]["nodes"] == 8 and out["total"]["stopped_early"] == []
    assert {r["kind"] for r in out["nodes"]} == {"parking", "air", "leak", "manhole"}
    assert len(senders) == 8
    # The summary counts what the nodes said they published; the broker saw at least that.
    assert 0 < out["total"]["readings"]
    assert all((tmp_path / r["node"] / "console.log").exists() for r in out["nodes"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--broker", "127.0.0.1", "--district", "xuhui", "--zone", "z"], "expected HOST:PORT"),
        (
            ["--broker", "127.0.0.1:1", "--district", "xuhui", "--zone", "z", "--kinds", "bus"],
            "unknown kind bus",
        ),
        (["--broker", "127.0.0.1:1", "--district", "Xu_Hui", "--zone", "z"], "not a slug"),
        (["--broker", "127.0.0.1:1", "--district", "xuhui", "--zone", "z"], "unreachable"),
    ],
)
def test_bad_arguments_get_one_line_and_nonzero_exit(args, message):
    proc = urbansense("sim", *args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_fleets_of_two_zones_on_one_broker_share_no_node_id(tmp_path):
    # The broker keys sessions on the client id (the node id): equal ids in two zones
    # would take each other's sessions.
    fleets = [
        Fleet("127.0.0.1", 1883, district, zone, KINDS, 8, 60, 1, tmp_path / zone)
        for district, zone in (
            ("xuhui", "caohejing"),
            ("xuhui", "xujiahui"),
            ("pudong-new-area", "lujiazui-finance-district"),
        )
    ]
    ids = [n.node_id for fleet in fleets for n in fleet.nodes]
    assert len(set(ids)) == len(ids) == 24
    assert all(is_slug(i) for i in ids), ids
