"""The production broker setup (TLS, no anonymous access, per-node passwords, topic ACLs)
against a real Mosquitto with certificates made here: who can connect, publish and read."""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from field.access import BrokerAccess
from field.pki import CertificateAuthority
from hil.services import BrokerTLS, MosquittoServer
from protocols.codec import encode_command, encode_reading, encode_receipt
from protocols.topics import receipt_topic, topic
from tests.support.mqtt_probe import Probe
from tests.support.waiting import wait_for

D, Z = "xuhui", "caohejing"


@dataclass
class Site:
    broker: MosquittoServer
    ca: Path
    access: BrokerAccess
    passwords: dict[str, str]

    def probe(self, user: str | None, password: str | None = None, **kw) -> Probe:
        if user is not None and password is None:
            password = self.passwords[user]
        return Probe(self.broker.port, user, password, ca=kw.pop("ca", self.ca), **kw)


@pytest.fixture
def site(tmp_path, mosquitto_factory) -> Site:
    ca = CertificateAuthority.create(tmp_path / "pki")
    server = ca.issue("broker", tmp_path / "pki", server_names=["127.0.0.1", "localhost"])
    access = BrokerAccess(tmp_path / "access")
    passwords = {
        "p-0001": access.add("p-0001", "node", D, Z),
        "p-0002": access.add("p-0002", "node", D, Z),
        "edge-xuhui-caohejing": access.add("edge-xuhui-caohejing", "edge", D, Z),
    }
    broker = mosquitto_factory(
        anonymous=False,
        tls=BrokerTLS(ca.files.cert, server.cert, server.key),
        password_file=access.passwd_path,
        acl_file=access.acl_path,
    )
    return Site(broker, ca.files.cert, access, passwords)


def _reading(node: str, seq: int) -> bytes:
    return encode_reading(node, "parking", 1, seq, {"occupied": True}, ts=int(time.time() * 1000))


def test_valid_node_credentials_connect(site):
    p = site.probe("p-0001")
    assert p.connect() is not None and p.ok(), p.connack
    p.close()


def test_anonymous_connect_is_refused(site):
    p = site.probe(None)
    rc = p.connect()
    assert rc is not None and rc.is_failure and "authori" in str(rc).lower(), rc
    p.close()


def test_wrong_password_is_refused(site):
    p = site.probe("p-0001", "not-the-password")
    rc = p.connect()
    assert rc is not None and rc.is_failure, rc
    p.close()


def test_client_refuses_a_broker_signed_by_another_ca(site, tmp_path):
    other = CertificateAuthority.create(tmp_path / "other", name="someone else")
    p = site.probe("p-0001", ca=other.files.cert)
    with pytest.raises(ssl.SSLCertVerificationError):
        p.connect()
    p.close()


def test_plaintext_client_gets_no_session_on_the_tls_port(site):
    p = Probe(site.broker.port, "p-0001", site.passwords["p-0001"])
    try:
        rc = p.connect(timeout=3)
    except OSError:
        rc = None
    assert rc is None or rc.is_failure
    p.close()


def test_node_cannot_publish_as_another_node(site):
    edge = site.probe("edge-xuhui-caohejing")
    assert edge.connect() is not None and edge.ok()
    edge.subscribe(f"city/v1/{D}/{Z}/+/telemetry")
    a = site.probe("p-0001")
    assert a.connect() is not None and a.ok()
    a.publish(topic(D, Z, "p-0002", "telemetry"), _reading("p-0002", 1))  # forged: dropped
    a.publish(topic(D, Z, "p-0001", "telemetry"), _reading("p-0001", 1))  # its own: delivered
    edge.wait_for(1)
    time.sleep(0.5)  # let a wrongly delivered forgery arrive, if the ACL failed
    topics = [t for t, _ in edge.messages]
    assert topics == [topic(D, Z, "p-0001", "telemetry")], topics
    a.close(), edge.close()


def test_node_cannot_read_another_nodes_commands(site):
    a = site.probe("p-0001")
    assert a.connect() is not None and a.ok()
    a.subscribe(f"city/v1/{D}/{Z}/+/cmd")  # tries to read every node's commands
    edge = site.probe("edge-xuhui-caohejing")
    assert edge.connect() is not None and edge.ok()
    edge.publish(topic(D, Z, "p-0002", "cmd"), encode_command("c-1", "ping"))
    edge.publish(topic(D, Z, "p-0001", "cmd"), encode_command("c-2", "ping"))
    a.wait_for(1)
    time.sleep(0.5)
    assert [t for t, _ in a.messages] == [topic(D, Z, "p-0001", "cmd")]
    a.close(), edge.close()


def test_edge_account_cannot_forge_node_data(site):
    # The edge's account on the gateway-local listener, where it may keep two sessions.
    edge_user, edge_password = "edge-xuhui-caohejing", site.passwords["edge-xuhui-caohejing"]
    listener = Probe(site.broker.edge_port, edge_user, edge_password, client_id="listener")
    assert listener.connect() is not None and listener.ok()
    listener.subscribe(f"city/v1/{D}/{Z}/#")
    edge = Probe(site.broker.edge_port, edge_user, edge_password)
    assert edge.connect() is not None and edge.ok()
    edge.publish(topic(D, Z, "p-0001", "telemetry"), _reading("p-0001", 5))  # denied
    edge.publish(topic(D, Z, "p-0001", "cmd"), encode_command("c-3", "ping"))  # allowed
    listener.wait_for(1)
    time.sleep(0.5)
    assert [t for t, _ in listener.messages] == [topic(D, Z, "p-0001", "cmd")]
    listener.close(), edge.close()


def _receipt(node: str, last_seq: int) -> bytes:
    return encode_receipt(node, int(time.time() * 1000), [[1, 0, last_seq]])


def _receipts(probe: Probe) -> list[tuple[str, list]]:
    """(node, ranges) of the receipts a probe got, in order."""
    return [(json.loads(p)["node"], json.loads(p)["got"]) for _, p in probe.messages]


def _until_marker(probe: Probe, node: str, last_seq: int) -> list[tuple[str, list]]:
    """The receipts a probe got, once the marker receipt (node, last_seq) is among them:
    what one publisher sent before the marker, or what was retained before the probe
    subscribed, came before it."""
    wait_for(lambda: (node, [[1, 0, last_seq]]) in _receipts(probe), 10, 0.02, what="marker receipt")
    return _receipts(probe)


def test_node_cannot_publish_a_receipt(site):
    """A forged receipt would make a node delete readings the edge never stored: only
    the edge's account may write one, for its own node or any other."""
    edge = site.probe("edge-xuhui-caohejing")
    assert edge.connect() is not None and edge.ok()
    edge.client.publish(
        receipt_topic(D, Z, "p-0001"), _receipt("p-0001", 7), qos=1, retain=True
    ).wait_for_publish(10)
    listener = site.probe("edge-xuhui-caohejing", client_id="listener")
    assert listener.connect() is not None and listener.ok()
    listener.subscribe(f"city/v1/{D}/{Z}/+/telemetry")
    listener.subscribe(f"city/v1/{D}/{Z}/+/receipt")
    wait_for(lambda: listener.messages, 10, 0.02, what="the retained receipt")
    a = site.probe("p-0001")
    assert a.connect() is not None and a.ok()
    a.client.publish(receipt_topic(D, Z, "p-0001"), _receipt("p-0001", 99), qos=1, retain=True)
    a.client.publish(receipt_topic(D, Z, "p-0002"), _receipt("p-0002", 99), qos=1, retain=True)
    # One client's messages reach a subscriber in order: once its reading is here, a
    # receipt it published before would be here too, had the broker let it through.
    a.publish(topic(D, Z, "p-0001", "telemetry"), _reading("p-0001", 1))
    wait_for(lambda: len(listener.messages) >= 2, 10, 0.02, what="the node's reading")
    assert [t for t, _ in listener.messages] == [
        receipt_topic(D, Z, "p-0001"),
        topic(D, Z, "p-0001", "telemetry"),
    ]
    # Nor was the forgery kept as the retained receipt a node reads when it wakes.
    late = site.probe("p-0001")
    assert late.connect() is not None and late.ok()
    late.subscribe(receipt_topic(D, Z, "p-0001"))
    edge.client.publish(receipt_topic(D, Z, "p-0001"), _receipt("p-0001", 8), qos=1)
    assert _until_marker(late, "p-0001", 8) == [("p-0001", [[1, 0, 7]]), ("p-0001", [[1, 0, 8]])]
    a.close(), edge.close(), listener.close(), late.close()


def test_node_reads_only_its_own_receipt(site):
    a = site.probe("p-0001")
    assert a.connect() is not None and a.ok()
    a.subscribe(f"city/v1/{D}/{Z}/+/receipt")  # tries to read every node's receipts
    edge = site.probe("edge-xuhui-caohejing")
    assert edge.connect() is not None and edge.ok()
    edge.client.publish(receipt_topic(D, Z, "p-0002"), _receipt("p-0002", 3), qos=1, retain=True)
    edge.client.publish(receipt_topic(D, Z, "p-0001"), _receipt("p-0001", 4), qos=1, retain=True)
    assert _until_marker(a, "p-0001", 4) == [("p-0001", [[1, 0, 4]])]
    # Nor is the other's retained receipt handed over on a new subscription.
    again = site.probe("p-0001", client_id="p-0001-again")
    assert again.connect() is not None and again.ok()
    again.subscribe(f"city/v1/{D}/{Z}/+/receipt")
    edge.client.publish(receipt_topic(D, Z, "p-0001"), _receipt("p-0001", 5), qos=1)
    assert _until_marker(again, "p-0001", 5) == [("p-0001", [[1, 0, 4]]), ("p-0001", [[1, 0, 5]])]
    # The other node does read its own.
    b = site.probe("p-0002")
    assert b.connect() is not None and b.ok()
    b.subscribe(receipt_topic(D, Z, "p-0002"))
    assert _until_marker(b, "p-0002", 3) == [("p-0002", [[1, 0, 3]])]
    a.close(), b.close(), again.close(), edge.close()


def test_rotated_password_replaces_the_old_one(site):
    old = site.passwords["p-0001"]
    new = site.access.rotate("p-0001")
    site.broker.reload()
    time.sleep(0.5)
    stale = site.probe("p-0001", old)
    rc = stale.connect()
    assert rc is not None and rc.is_failure, rc
    stale.close()
    fresh = site.probe("p-0001", new)
    assert fresh.connect() is not None and fresh.ok()
    fresh.close()


def test_revoked_node_is_refused(site):
    site.access.revoke("p-0002")
    # A revocation restarts the broker: a reload changes who may log in next, but does not
    # drop a revoked node's live connection (deploy/README.md).
    site.broker.restart()
    p = site.probe("p-0002")
    rc = p.connect()
    assert rc is not None and rc.is_failure, rc
    p.close()
    assert "p-0002" not in site.access.acl_path.read_text()
