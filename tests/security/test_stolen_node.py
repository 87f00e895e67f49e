"""An opened node box: node A's password (and the site CA) in an attacker's hands, against
the site's real setup: a TLS Mosquitto with the accounts and ACL `urbansense creds`
makes and client ids bound to accounts, a real edge (a subprocess) and InfluxDB.

A may try any client id and any subscription; node B and the edge must not notice."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from field.access import BrokerAccess, new_shared_group
from field.pki import CertificateAuthority
from hil.services import BrokerTLS, InfluxDBServer, MosquittoServer
from protocols import codec
from protocols.topics import topic as full_topic
from tests.support.edge_process import started_edges, v1_sink, write_config
from tests.support.influx_points import influx_count
from tests.support.readings import now_ms
from tests.support.site import DISTRICT, ZONE, topic
from tests.support.waiting import wait_for

A, B = "p-0001", "m-0002"
EDGE_USER = f"edge-{DISTRICT}-{ZONE}"


@pytest.fixture
def edges(request):
    yield from started_edges(request)


class NodeClient:
    """A paho client logged in as a node: persistent session, QoS 1, TLS with the site CA."""

    def __init__(self, port: int, user: str, password: str, ca: Path | None, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.username_pw_set(user, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.reconnect_delay_set(0.05, 0.2)
        self.port = port
        self.messages: list[tuple[str, bytes]] = []
        self.connects = 0
        self.disconnects = 0
        self.connack: mqtt.ReasonCode | None = None
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = reason_code
        if not reason_code.is_failure:
            self.connects += 1
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.disconnects += 1

    def connect(self) -> NodeClient:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        wait_for(self._connected.is_set, 20, what="CONNACK")
        return self

    def subscribe(self, filter_: str) -> int:
        """The granted QoS (128: refused)."""
        granted: list[int] = []
        self.client.on_subscribe = lambda c, u, mid, codes, p: granted.extend(int(x.value) for x in codes)
        self.client.subscribe(filter_, qos=1)
        wait_for(lambda: granted, 20, what=f"SUBACK for {filter_}")
        return granted[0]

    def publish_all(self, messages: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Site:
    broker: MosquittoServer
    influx: InfluxDBServer
    ca: Path
    passwords: dict[str, str]
    db: str
    shared_group: str

    def node(self, user: str, client_id: str | None = None) -> NodeClient:
        return NodeClient(self.broker.port, user, self.passwords[user], self.ca, client_id or user)

    def edge_config(self, folder: Path, shared: bool = False) -> Path:
        mqtt_extra = {"username": EDGE_USER, "password": self.passwords[EDGE_USER]}
        if shared:
            mqtt_extra["shared_group"] = self.shared_group
        return write_config(
            folder,
            mqtt_port=self.broker.edge_port,  # the gateway-local listener
            client_id=EDGE_USER,
            mqtt_extra=mqtt_extra,
            sinks=[v1_sink("district", self.influx, self.db)],
        )


@pytest.fixture
def site(tmp_path, mosquitto_factory, influxdb) -> Site:
    pki = CertificateAuthority.create(tmp_path / "pki")
    server = pki.issue("broker", tmp_path / "pki", server_names=["127.0.0.1"])
    access = BrokerAccess(tmp_path / "access")
    passwords = {
        user: access.add(user, role, DISTRICT, ZONE)
        for user, role in ((A, "node"), (B, "node"), (EDGE_USER, "edge"))
    }
    broker = mosquitto_factory(
        anonymous=False,
        tls=BrokerTLS(pki.files.cert, server.cert, server.key),
        password_file=access.passwd_path,
        acl_file=access.acl_path,
    )
    db = f"stolen_{tmp_path.name[-12:].replace('-', '_')}_{time.monotonic_ns()}"
    return Site(broker, influxdb, pki.files.cert, passwords, db, new_shared_group())


def b_readings(n: int, first_seq: int = 0) -> list[tuple[str, bytes]]:
    return [
        (
            topic(B, "telemetry"),
            codec.encode_reading(B, "manhole", 1, s, {"tilt_deg": 1.0}, ts=now_ms() - 600_000 + s),
        )
        for s in range(first_seq, first_seq + n)
    ]


def b_alarms(n: int, first_seq: int) -> list[tuple[str, bytes]]:
    return [
        (
            topic(B, "event"),
            codec.encode_event(B, "manhole", 1, s, "tilt", s % 2 == 0, ts=now_ms() - 600_000 + s),
        )
        for s in range(first_seq, first_seq + n)
    ]


def test_a_cannot_take_over_b_s_session_or_its_queued_command(site):
    # B subscribes to its commands and goes to sleep: its session keeps them.
    b = site.node(B).connect()
    assert b.subscribe(full_topic(DISTRICT, ZONE, B, "cmd")) == 1
    b.close()
    # The edge's account, on the gateway-local listener, sends B a command.
    edge = NodeClient(site.broker.edge_port, EDGE_USER, site.passwords[EDGE_USER], None, "edge-cmd").connect()
    edge.publish_all([(full_topic(DISTRICT, ZONE, B, "cmd"), codec.encode_command("c-1", "ping"))])

    # A logs in as B's client id, takes whatever it is given and leaves.
    a = site.node(A, client_id=B).connect()
    assert a.connack is not None and not a.connack.is_failure
    a.subscribe(full_topic(DISTRICT, ZONE, B, "cmd"))
    a.close()

    # B wakes up: its command is still there, A saw nothing.
    b = site.node(B).connect()
    wait_for(lambda: b.messages, 30, what="B's queued command")
    assert [t for t, _ in b.messages] == [full_topic(DISTRICT, ZONE, B, "cmd")]
    assert a.messages == []

    # A, connected as "B" while B is awake, does not kick B off.
    a = site.node(A, client_id=B).connect()
    b.publish_all(b_readings(5))
    a.close()
    assert b.connects == 1 and b.disconnects == 0
    b.close(), edge.close()


def test_a_cannot_kick_the_edge_and_b_s_alarms_and_readings_all_arrive(site, edges, tmp_path):
    edge = edges(site.edge_config(tmp_path / "edge")).start()
    connections = edge.connections()
    b = site.node(B).connect()

    # A in a tight reconnect loop under the edge's two client ids while B reports.
    stop = threading.Event()
    refused_or_renamed = []

    def hammer() -> None:
        while not stop.is_set():
            for cid in (EDGE_USER, f"{EDGE_USER}-events"):
                a = site.node(A, client_id=cid).connect()
                refused_or_renamed.append(a.connack)
                a.close()

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(refused_or_renamed) >= 4, 60, what="A's first takeover attempts")
        b.publish_all(b_readings(40))
        b.publish_all(b_alarms(20, first_seq=40))
        wait_for(lambda: len(refused_or_renamed) >= 10, 60, what="more takeover attempts")
    finally:
        stop.set()
        thread.join(60)
    wait_for(lambda: influx_count(site.influx, site.db, "manhole", "tilt_deg") >= 40, 60, what="B's readings")
    wait_for(lambda: influx_count(site.influx, site.db, "events", "state") >= 20, 60, what="B's alarms")
    assert influx_count(site.influx, site.db, "manhole", "tilt_deg") == 40
    assert influx_count(site.influx, site.db, "events", "state") == 20
    # The edge never lost a session to A: no reconnect, no "disconnected" in its log.
    assert edge.connections() == connections
    assert "disconnected" not in edge.log_text()
    b.close()


def test_a_joining_shared_subscriptions_takes_none_of_b_s_readings(site, edges, tmp_path):
    edge = edges(site.edge_config(tmp_path / "edge", shared=True)).start()
    zone = f"city/v1/{DISTRICT}/{ZONE}"
    # Every group name A can learn without the edge's config: the examples', the zone's,
    # the edge's account and client id; and a shared group of its own.
    # (A has one session only: its client id is its username, whatever it asks for.)
    guesses = [ZONE, DISTRICT, "workers", "edge", EDGE_USER, "bench", "a"]
    a = site.node(A).connect()
    for group in guesses:
        for filter_ in (f"{zone}/+/telemetry", f"{zone}/+/event", f"{zone}/#"):
            a.subscribe(f"$share/{group}/{filter_}")
    b = site.node(B).connect()
    b.publish_all(b_readings(20))
    wait_for(lambda: influx_count(site.influx, site.db, "manhole", "tilt_deg") >= 20, 60, what="B's readings")
    assert influx_count(site.influx, site.db, "manhole", "tilt_deg") == 20
    assert a.messages == []
    a.close(), b.close()
    assert edge.running()
