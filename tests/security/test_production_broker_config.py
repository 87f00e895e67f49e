"""deploy/mosquitto/urbansense.conf is the file a gateway runs: start a real Mosquitto
with it (only paths and ports moved into a temp dir) and check what it promises."""

from __future__ import annotations

import getpass
import re
from pathlib import Path

import pytest

from field.access import BrokerAccess
from field.pki import CertificateAuthority
from hil.services import MosquittoServer, free_port
from tests.support.mqtt_probe import Probe

CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "urbansense.conf"


class ProductionBroker(MosquittoServer):
    def __init__(self, workdir: Path, etc: Path) -> None:
        super().__init__(workdir)
        self.etc = etc
        self.local_port = free_port()

    def prepare(self) -> None:
        text = CONF.read_text()
        text = text.replace("/etc/mosquitto/urbansense", str(self.etc))
        text = text.replace("/var/lib/mosquitto/", f"{self.workdir}/")
        text = text.replace("listener 8883", f"listener {self.port}")
        text = text.replace("listener 1883 127.0.0.1", f"listener {self.local_port} 127.0.0.1")
        text = text.replace("log_dest syslog", "log_dest stdout")
        text = f"user {getpass.getuser()}\n" + text
        live = [ln for ln in text.splitlines() if not ln.startswith("#")]
        assert not any(re.search(r"(^|\s)/(etc|var)/", ln) for ln in live), live
        self.config_path.write_text(text)


@pytest.fixture
def broker(tmp_path, request):
    etc = tmp_path / "etc"
    ca = CertificateAuthority.create(etc / "pki")
    ca.issue("broker", etc / "pki", server_names=["127.0.0.1"])
    access = BrokerAccess(etc)
    password = access.add("p-0001", "node", "xuhui", "caohejing")
    edge_password = access.add("edge-1", "edge", "xuhui", "caohejing")
    server = ProductionBroker(tmp_path / "run", etc)
    server.start()
    yield server, ca.files.cert, password, edge_password
    server.stop()


def test_config_has_no_anonymous_and_a_tls_listener():
    text = CONF.read_text()
    assert re.search(r"^allow_anonymous false$", text, re.M)
    assert re.search(r"^listener 8883$", text, re.M)
    assert re.search(r"^acl_file ", text, re.M) and re.search(r"^password_file ", text, re.M)


def test_production_config_runs_and_refuses_strangers(broker):
    server, ca, password, _ = broker
    node = Probe(server.port, "p-0001", password, ca=ca)
    assert node.connect() is not None and node.ok()
    node.close()
    stranger = Probe(server.port, ca=ca)
    rc = stranger.connect()
    assert rc is not None and rc.is_failure
    stranger.close()
    local = Probe(server.local_port)  # the local plain listener: still no anonymous
    rc = local.connect()
    assert rc is not None and rc.is_failure
    local.close()


def test_production_config_refuses_oversized_payloads(broker):
    server, ca, password, edge_password = broker
    edge = Probe(server.port, "edge-1", edge_password, ca=ca)
    assert edge.connect() is not None and edge.ok()
    edge.subscribe("city/v1/xuhui/caohejing/#")
    node = Probe(server.port, "p-0001", password, ca=ca)
    assert node.connect() is not None and node.ok()
    topic = "city/v1/xuhui/caohejing/p-0001/telemetry"
    node.client.publish(topic, b"x" * 9000, qos=1)
    node.client.publish(topic, b"small", qos=1).wait_for_publish(5)
    edge.wait_for(1)
    assert [p for _, p in edge.wait_for(2, timeout=1)] == [b"small"]
    node.close(), edge.close()
