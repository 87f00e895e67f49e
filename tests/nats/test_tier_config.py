"""The edge's `[mqtt] servers` list and `broker` kind, and `urbansense sim --broker` with
several members: what a clustered tier needs, refused with the key that is wrong."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from edge.config import ConfigError, parse_config
from tests.support.cli import URBANSENSE, urbansense
from tests.support.subscriber import subscribed_client
from tests.support.waiting import wait_for

SINK = {"name": "district", "url": "http://127.0.0.1:8086", "database": "district_xuhui"}


def config(**mqtt) -> dict:
    return {"site": {"district": "xuhui", "zone": "caohejing"}, "mqtt": mqtt, "sink": [SINK]}


def problems(**mqtt) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(config(**mqtt), Path("."))
    return err.value.problems


def test_servers_list_the_members_in_order():
    cfg = parse_config(
        config(client_id="edge-1", broker="nats", servers=["10.0.0.1:1883", "[::1]:1884", "b.example:1885"]),
        Path("."),
    )
    assert cfg.mqtt.members == [("10.0.0.1", 1883), ("::1", 1884), ("b.example", 1885)]
    one = parse_config(config(client_id="edge-1", host="10.0.0.9", port=1999), Path("."))
    assert one.mqtt.members == [("10.0.0.9", 1999)]


@pytest.mark.parametrize(
    "mqtt, message",
    [
        ({"servers": ["a:1883", "b:1883"]}, 'set broker = "nats"'),
        ({"servers": ["a:1883"], "host": "a"}, "either `servers` or `host`/`port`"),
        ({"servers": []}, "servers must not be empty"),
        ({"servers": ["a:1883", "a:1883"], "broker": "nats"}, "listed twice: a:1883"),
        ({"servers": ["a"], "broker": "nats"}, "'a' is not host:port"),
        ({"servers": ["a:99999"], "broker": "nats"}, "is not host:port"),
        ({"broker": "nats", "shared_group": "caohejing"}, "shared_group: a NATS tier"),
        ({"broker": "rabbit"}, "mqtt.broker"),
    ],
)
def test_a_bad_tier_is_refused_with_its_key(mqtt, message):
    found = problems(client_id="edge-1", **mqtt)
    assert any(message in line for line in found), found


@pytest.mark.parametrize("client_id", ["edge.1", "edge*", "edge>", "edge 1", "e\t1"])
def test_client_ids_a_nats_broker_refuses_are_refused(client_id):
    found = problems(client_id=client_id)
    assert any(line.startswith("mqtt.client_id:") and "NATS" in line for line in found), found


def test_check_config_names_the_shared_group_of_a_nats_tier(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(
        '[site]\ndistrict = "xuhui"\nzone = "caohejing"\n\n[mqtt]\nservers = ["127.0.0.1:1883", '
        '"127.0.0.2:1883"]\nbroker = "nats"\nclient_id = "w1"\nshared_group = "caohejing"\n\n'
        '[[sink]]\nname = "district"\nurl = "http://127.0.0.1:8086"\ndatabase = "district_xuhui"\n'
    )
    proc = urbansense("edge", "check-config", str(path), "--json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["valid"] is False
    assert any("shared_group" in p and "topics" in p for p in out["problems"]), out


def test_sim_runs_a_fleet_on_every_member(nats_cluster, tmp_path):
    a, b, c = nats_cluster.members
    seen: set[str] = set()
    watcher = subscribed_client(
        b.host,
        b.port,
        "sim-watcher",
        [("city/v1/xuhui/sim-nats/+/telemetry", 0)],
        lambda client, userdata, msg: seen.add(msg.topic.split("/")[4]),
        what="the sim's watcher",
        timeout=60,  # a JetStream-backed session on a loaded cluster
    )
    a.kill()  # the first member down: the nodes fail over to the others
    # Until Ctrl-C: the sim runs as long as it takes each node to reach a live member. A
    # node's first session on a loaded 3-member cluster can take longer than the
    # firmware's SUBACK timeout to create: the node then tries again next wake.
    sim = subprocess.Popen(
        [
            URBANSENSE,
            "sim",
            "--broker",
            ",".join(nats_cluster.addresses),
            "--nodes",
            "2",
            "--kinds",
            "parking",
        ]
        + [
            "--district",
            "xuhui",
            "--zone",
            "sim-nats",
            "--interval",
            "0.5",
            "--dir",
            str(tmp_path),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The test runner's workers may ignore SIGINT; the sim must see its Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(lambda: len(seen) >= 2 or sim.poll() is not None, 180, 0.2, "telemetry from both nodes")
        sim.send_signal(signal.SIGINT)
        out_text, err = sim.communicate(timeout=120)
    finally:
        watcher.disconnect()
        watcher.loop_stop()
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    assert sim.returncode == 0, err + out_text
    assert len(seen) == 2, seen
    assert f"broker member {a.address} unreachable" in err
    out = json.loads(out_text)
    assert out["total"]["stopped_early"] == []
    assert sorted(row["node"] for row in out["nodes"]) == sorted(seen)
    assert all(row["published"] > 0 for row in out["nodes"]), out["nodes"]
    for row in out["nodes"]:
        cfg = json.loads((tmp_path / row["node"] / "config.json").read_text())
        assert cfg["broker"]["servers"] == nats_cluster.addresses


def test_sim_says_in_one_line_when_no_member_answers(tmp_path):
    proc = urbansense(
        "sim", "--broker", "127.0.0.1:9,127.0.0.1:7", "--district", "xuhui", "--zone", "z", "--duration", "1"
    )
    assert proc.returncode != 0
    assert "broker unreachable: 127.0.0.1:9:" in proc.stderr and "127.0.0.1:7:" in proc.stderr
    assert "Traceback" not in proc.stderr
