"""The firmware's MQTT client (firmware/lib/mqtt_client.py) under MicroPython against a
real Mosquitto."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from hil import micropython
from hil.sim import SimNode, node_config
from tests.support.broker_log import BrokerLog

PROBE = Path(__file__).parent / "mp" / "mqtt_probe.py"


def start_probe(node_path: str, port: int, mode: str, prefix: str) -> subprocess.Popen:
    env = dict(os.environ, MICROPYPATH=node_path)
    return subprocess.Popen(
        [micropython.interpreter(), "-X", "heapsize=48k", str(PROBE), "127.0.0.1", str(port), mode, prefix],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_qos1_retained_qos0_receive_and_clean_disconnect(mosquitto, node_path):
    log = BrokerLog(mosquitto.host, mosquitto.port, ["rt/#"])
    try:
        probe = start_probe(node_path, mosquitto.port, "roundtrip", "rt")
        log.wait_for(lambda ln: ln.on("/q0"), what="the probe's publishes")
        log.publish("rt/in", b"hello")
        out, _ = probe.communicate(timeout=30)
        assert probe.returncode == 0, out.decode()
        log.wait_for(lambda ln: ln.on("/echo"), what="the echo")
        assert [m.payload for m in log.on("/out")] == [b"m%d" % i for i in range(20)]
        assert [m.payload for m in log.on("/retained")] == [b"birth"]
        assert [m.payload for m in log.on("/echo")] == [b"hello"]
        time.sleep(0.5)
        assert log.on("/will") == [], "a clean DISCONNECT must discard the will"
    finally:
        log.close()


def test_keepalive_holds_an_idle_link_and_will_fires_on_kill(mosquitto, node_path):
    log = BrokerLog(mosquitto.host, mosquitto.port, ["hang/#"])
    probe = start_probe(node_path, mosquitto.port, "hang", "hang")
    try:
        assert probe.stdout.readline().strip() == b"connected"
        # Keepalive is 2 s: without PINGREQs the broker would drop the idle link after 3 s
        # and publish the will.
        time.sleep(5)
        assert log.on("/will") == []
        assert probe.poll() is None
        probe.kill()
        probe.wait()
        log.wait_for(lambda ln: ln.on("/will"), timeout=15, what="the last will")
        assert log.on("/will")[0].payload == b"offline"
    finally:
        if probe.poll() is None:
            probe.kill()
        probe.wait()
        log.close()


def test_reconnects_after_broker_restart_and_restores_subscription(mosquitto_factory, node_path):
    broker = mosquitto_factory()
    log = BrokerLog(broker.host, broker.port, ["steady/#"])
    probe = start_probe(node_path, broker.port, "steady", "steady")
    try:
        log.wait_for(lambda ln: len(ln.on("/out")) >= 10, what="first publishes")
        broker.stop()
        time.sleep(2)
        broker.start()
        log.wait_for(lambda ln: len(ln.on("/out")) >= 30, what="publishes after the restart")
        log.publish("steady/in", b"after-restart")
        out, _ = probe.communicate(timeout=90)
        assert probe.returncode == 0, out.decode()
        assert b"connected 2" in out, out.decode()
        values = [int(m.payload) for m in log.on("/out")]
        first_seen = list(dict.fromkeys(values))
        # QoS1: at least once, so a message in flight at the restart may arrive twice,
        # but none is missing and the first arrivals are in order.
        assert first_seen == list(range(150))
        assert [m.payload for m in log.on("/echo")] == [b"after-restart"]
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
        log.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca_and_server_cert(folder: Path, name: str = "ca") -> None:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it, with openssl.
    MicroPython's ssl (mbedTLS) takes the CA in DER form."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        cwd=folder,
    )
    _openssl("x509", "-in", f"{name}.pem", "-outform", "der", "-out", f"{name}.der", cwd=folder)
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=folder,
    )
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        f"{name}.pem",
        "-CAkey",
        f"{name}.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=folder,
    )


def tls_broker(mosquitto_factory, tmp_path: Path):
    """A broker with a TLS listener whose certificate the `good` CA signed, and a second,
    unrelated CA (`other`) for refusal tests: (broker, tls_port, good, other)."""
    from hil.services import free_port

    good, other = tmp_path / "good", tmp_path / "other"
    good.mkdir()
    other.mkdir()
    make_ca_and_server_cert(good)
    make_ca_and_server_cert(other, name="other-ca")
    tls_port = free_port()
    broker = mosquitto_factory(
        extra_config="\n".join(
            [
                f"listener {tls_port} 127.0.0.1",
                f"cafile {good / 'ca.pem'}",
                f"certfile {good / 'server.pem'}",
                f"keyfile {good / 'server.key'}",
                "allow_anonymous true",
            ]
        )
    )
    return broker, tls_port, good, other


def test_tls_with_a_verified_broker_and_refusal_of_an_unknown_one(
    mosquitto_factory, node_path, tmp_path, bundle
):
    broker, tls_port, good, other = tls_broker(mosquitto_factory, tmp_path)
    log = BrokerLog(broker.host, broker.port, ["tls/#"])
    env = dict(os.environ, MICROPYPATH=node_path)
    base = [
        micropython.interpreter(),
        "-X",
        "heapsize=128k",
        str(PROBE),
        "127.0.0.1",
        str(tls_port),
        "roundtrip",
        "tls",
    ]
    try:
        ok = subprocess.Popen(
            base + [str(good / "ca.der")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        log.wait_for(lambda ln: ln.on("/q0"), what="publishes over TLS")
        log.publish("tls/in", b"over-tls")
        out, _ = ok.communicate(timeout=30)
        assert ok.returncode == 0, out.decode()
        log.wait_for(lambda ln: ln.on("/echo"), what="the echo over TLS")
        assert len(log.on("/out")) == 20 and log.on("/echo")[0].payload == b"over-tls"
        # A broker whose certificate the node's CA did not sign is refused.
        bad = subprocess.run(base + [str(other / "other-ca.der")], env=env, capture_output=True, timeout=60)
        assert bad.returncode != 0
        assert b"connected" not in bad.stdout
        # The whole node, configured for TLS with its CA in flash, publishes over it.
        node = SimNode(
            tmp_path / "tls-node",
            node_config(
                "tls-p1",
                "parking",
                "xuhui",
                "caohejing",
                "127.0.0.1",
                tls_port,
                0.3,
                schedule="always-on",
                seed=1,
            ),
            bundle=bundle,
        )
        node.config["broker"].update(tls=True, ca=str(good / "ca.der"))
        (node.flash_dir / "config.json").write_text(json.dumps(node.config))
        tls_log = BrokerLog(broker.host, broker.port, ["city/v1/xuhui/caohejing/tls-p1/#"])
        node.start()
        try:
            tls_log.wait_for(lambda ln: ln.on("/telemetry"), what="telemetry over TLS")
        finally:
            node.stop()
            tls_log.close()
            print(node.console_tail(20))
    finally:
        log.close()


def test_a_lost_puback_makes_the_client_send_again_with_dup(mosquitto, node_path):
    from tests.support.puback_dropper import PubackDropper

    relay = PubackDropper(mosquitto.port)
    log = BrokerLog(mosquitto.host, mosquitto.port, ["lost/#"])
    try:
        probe = start_probe(node_path, relay.port, "roundtrip", "lost")
        log.wait_for(lambda ln: ln.on("/q0"), what="the probe's publishes through the relay")
        log.publish("lost/in", b"x")
        out, _ = probe.communicate(timeout=30)
        assert probe.returncode == 0, out.decode()
        assert relay.dropped == 1
        first_flags, first_pid = relay.publishes[0]
        again = [f for f, pid in relay.publishes[1:] if pid == first_pid]
        # The same packet id again, with the DUP flag (0x08) that the first send lacked.
        assert not first_flags & 0x08 and again and again[0] & 0x08
        # m0 reached the broker (once per send); nothing after it is missing or reordered.
        payloads = [m.payload for m in log.on("/out")]
        assert list(dict.fromkeys(payloads)) == [b"m%d" % i for i in range(20)]
    finally:
        relay.close()
        log.close()


def test_a_silently_dead_link_is_detected_by_keepalive(mosquitto, node_path):
    from tests.support.puback_dropper import PubackDropper

    relay = PubackDropper(mosquitto.port)
    relay.dropped = 1  # lose no PUBACK here
    probe = start_probe(node_path, relay.port, "hang", "dead")
    try:
        assert probe.stdout.readline().strip() == b"connected"
        relay.blackhole = True  # the link dies without a FIN or RST
        lines = []
        while b"mqtt closed" not in b"".join(lines):
            line = probe.stdout.readline()
            assert line, "probe exited"
            lines.append(line)
        # Keepalive is 2 s: no PINGRESP within 1.5 keepalives means the link is dead.
        assert any(b"keepalive timeout" in line for line in lines), lines
    finally:
        probe.kill()
        probe.wait()
        relay.close()


def test_node_with_the_wrong_ca_refuses_the_broker_and_says_why(mosquitto_factory, tmp_path, bundle):
    broker, tls_port, good, other = tls_broker(mosquitto_factory, tmp_path)
    log = BrokerLog(broker.host, broker.port, ["city/v1/xuhui/caohejing/tls-p2/#"])
    node = SimNode(
        tmp_path / "wrong-ca-node",
        node_config(
            "tls-p2",
            "parking",
            "xuhui",
            "caohejing",
            "127.0.0.1",
            tls_port,
            0.3,
            schedule="always-on",
            seed=1,
        ),
        bundle=bundle,
    )
    node.config["broker"].update(tls=True, ca=str(other / "other-ca.der"))
    (node.flash_dir / "config.json").write_text(json.dumps(node.config))
    node.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "error mqtt" not in node.console_tail(50):
            time.sleep(0.2)
        console = node.console_tail(50)
    finally:
        node.stop()
        log.close()
    lines = [ln for ln in console.splitlines() if "error mqtt" in ln]
    assert lines, console
    # mbedTLS names the failed certificate check; the node's log carries it.
    assert any(re.search(r"x509|verify|cert", ln, re.I) for ln in lines), lines
    assert not log.on("/telemetry") and not log.on("/status")
