"""The edge and its CLI never write a secret: the MQTT password and the InfluxDB password
and token in the config appear in no log line (at debug level, on success and on failure),
no CLI output, no metric and no byte of the edge's state folder (buffer, dead letters)."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from pathlib import Path

import pytest

from field.access import BrokerAccess
from protocols import codec
from tests.support.cli import URBANSENSE
from tests.support.edge_process import v1_sink, write_config
from tests.support.metrics import metric
from tests.support.mqtt_probe import Probe
from tests.support.readings import now_ms
from tests.support.site import DISTRICT, ZONE, topic
from tests.support.waiting import wait_for

EDGE_USER = f"edge-{DISTRICT}-{ZONE}"


def run_edge(config: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                URBANSENSE,
                "edge",
                "run",
                "--config",
                str(config),
                "--log-level",
                "debug",
                "--log-format",
                "text",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    return proc.wait(30)


def cli(*args: str) -> str:
    done = subprocess.run([URBANSENSE, *args], capture_output=True, timeout=60)
    return (done.stdout + done.stderr).decode(errors="replace")


def leaks(text: bytes, secret_values: list[str]) -> list[str]:
    """Which secrets (or their base64 / Basic-auth forms) occur in text."""
    found = []
    for s in secret_values:
        forms = [s.encode(), base64.b64encode(s.encode()), base64.b64encode(f"{EDGE_USER}:{s}".encode())]
        if any(f in text for f in forms):
            found.append(s)
    return found


@pytest.fixture
def broker(tmp_path, mosquitto_factory):
    access = BrokerAccess(tmp_path / "access")
    edge_password = access.add(EDGE_USER, "edge", DISTRICT, ZONE)
    node_password = access.add("p-0001", "node", DISTRICT, ZONE)
    server = mosquitto_factory(anonymous=False, password_file=access.passwd_path, acl_file=access.acl_path)
    return server, edge_password, node_password


def test_no_secret_in_logs_outputs_metrics_or_state(tmp_path, broker, influxdb, victoria):
    server, mqtt_password, node_password = broker
    influx_password = "influx-pw-" + secrets.token_hex(8)
    token = "sink-token-" + secrets.token_hex(8)
    url_password = "url-pw-" + secrets.token_hex(8)
    secret_values = [mqtt_password, influx_password, token, url_password]

    sinks = [
        v1_sink("district", influxdb, "security_secrets", username="writer", password=influx_password),
        {
            "name": "city",
            "url": victoria.url,
            "api": "v2",
            "bucket": "city",
            "org": "urbansense",
            "token": token,
            "batch_wait_ms": 20,
        },
        # Nothing listens here: its failures are logged, and must not carry the secrets.
        {
            "name": "down",
            "url": f"http://writer:{url_password}@127.0.0.1:9",
            "api": "v1",
            "database": "x",
            "username": "writer",
            "password": influx_password,
            "retry_min_s": 0.05,
            "retry_max_s": 0.2,
        },
    ]
    good = tmp_path / "good"
    config = write_config(
        good,
        mqtt_port=server.edge_port,
        client_id=EDGE_USER,
        metrics=True,
        sinks=sinks,
        mqtt_extra={"username": EDGE_USER, "password": mqtt_password},
    )
    log = good / "edge.log"
    proc = run_edge(config, log)
    try:
        wait_for(
            lambda: log.read_text().count("mqtt connected") >= 2 or proc.poll() is not None,
            what="edge connected",
        )
        assert proc.poll() is None, log.read_text()
        node = Probe(server.port, "p-0001", node_password)
        assert node.connect() is not None and node.ok(), node.connack
        messages = [
            (
                topic("p-0001", "telemetry"),
                codec.encode_reading("p-0001", "parking", 1, s, {"occupied": True}, ts=now_ms() - 1000 + s),
            )
            for s in range(5)
        ]
        messages += [
            (topic("p-0001", "telemetry"), b'{"v":1,"node":"p-0001","kind":"parking","x":1}'),
            (
                topic("p-0001", "event"),
                codec.encode_event("p-0001", "parking", 1, 9, "occupancy", True, ts=now_ms()),
            ),
        ]
        for t, p in messages:
            node.publish(t, p)
        node.close()
        wait_for(
            lambda: influxdb.count("parking", "security_secrets", "occupied") == 5, what="readings stored"
        )
        wait_for(lambda: "sink down: write failed" in log.read_text(), what="the failing sink's log")
        metrics_text = Path(log).parent / "metrics.txt"
        listen = json.loads(cli("edge", "check-config", str(config), "--json"))["metrics"]
        import urllib.request

        with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as resp:
            metrics_text.write_bytes(resp.read())
        assert metric(metrics_text.read_text(), "urbansense_edge_readings_total") == 5
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]

    # The same edge with a wrong MQTT password: refused, and it says so without the secret.
    wrong = "wrong-pw-" + secrets.token_hex(8)
    secret_values.append(wrong)
    bad = tmp_path / "bad"
    bad_config = write_config(
        bad,
        mqtt_port=server.edge_port,
        client_id=EDGE_USER + "-2",
        sinks=sinks[:1],
        mqtt_extra={"username": EDGE_USER, "password": wrong},
    )
    bad_log = bad / "edge.log"
    proc = run_edge(bad_config, bad_log)
    try:
        wait_for(
            lambda: "connect refused" in bad_log.read_text() or "disconnected" in bad_log.read_text(),
            what="the refused connection in the log",
        )
    finally:
        stop(proc)

    # A config with a mistake next to the secrets: the error names the key, not the values.
    broken = tmp_path / "broken.toml"
    broken.write_text(
        config.read_text()
        .replace("[mqtt]", '[mqtt]\nhots = "x"', 1)
        .replace(f'password = "{mqtt_password}"', f'password = ["{mqtt_password}"]')
    )
    outputs = {
        "check-config": cli("edge", "check-config", str(config)),
        "check-config --json": cli("edge", "check-config", str(config), "--json"),
        "check-config broken": cli("edge", "check-config", str(broken)),
        "check-config broken --json": cli("edge", "check-config", str(broken), "--json"),
        "run broken": cli("edge", "run", "--config", str(broken)),
        "dead-letters": cli("edge", "dead-letters", "--config", str(config), "--json"),
        "nodes": cli("nodes", "--config", str(config), "--json"),
    }
    assert "hots: unknown key" in outputs["check-config broken"]
    assert "mqtt.password" in outputs["check-config broken"]
    assert "***@127.0.0.1:9" in outputs["check-config"]
    assert json.loads(outputs["dead-letters"])["by_reason"] == {"unknown_field": 1}

    # The search finds the secrets where they are meant to be: the config files.
    assert leaks(config.read_bytes() + bad_config.read_bytes(), secret_values) == secret_values
    for name, text in outputs.items():
        assert not leaks(text.encode(), secret_values), f"{name} shows a secret:\n{text}"
    written = [p for folder in (good, bad) for p in folder.rglob("*") if p.is_file() and p.suffix != ".toml"]
    assert any(p.name == "buffer.db" for p in written) and log in written and bad_log in written
    for path in written:
        assert not leaks(path.read_bytes(), secret_values), f"{path} holds a secret"
