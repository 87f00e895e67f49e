"""`urbansense demo --broker nats`: the city in a box on a 3-member NATS cluster, lean
(one node per zone, a few seconds); the demo's own tests cover it on Mosquitto."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import urbansense

pytestmark = pytest.mark.slow


def test_demo_runs_its_city_on_a_nats_cluster(tmp_path):
    proc = urbansense(
        "demo",
        "--broker",
        "nats",
        "--duration",
        "6",
        "--nodes-per-zone",
        "1",
        "--interval",
        "1",
        "--state-dir",
        str(tmp_path / "demo"),
        "--json",
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "starting NATS on 127.0.0.1:" in proc.stderr
    report = json.loads(proc.stdout)
    raw = [r for r in report["landed"] if r["database"].startswith("district_")]
    # Every district got its parking node's readings through the cluster into InfluxDB.
    assert {r["database"] for r in raw if r["points"] > 0} == {"district_xuhui", "district_minhang"}
    edge_cfg = (tmp_path / "demo" / "edge-xuhui-caohejing" / "edge.toml").read_text()
    assert 'broker = "nats"' in edge_cfg and edge_cfg.count("127.0.0.1:") >= 3
