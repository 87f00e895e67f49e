"""A site set up as a city runs one, for security tests: a site CA, the accounts and ACL
`urbansense creds` makes (node A, node B, the zone's edge), a TLS Mosquitto in the rig's
secured mode (client ids bound to accounts on the nodes' listener, the edge on its own
loopback listener), an edge config for it, and node clients that log in as A or B."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from field.access import BrokerAccess, new_shared_group
from field.pki import CertificateAuthority
from hil.services import BrokerTLS, InfluxDBServer, MosquittoServer
from protocols import codec
from tests.support.edge_process import v1_sink, write_config
from tests.support.readings import now_ms
from tests.support.site import DISTRICT, ZONE, topic
from tests.support.waiting import wait_for

A, B = "p-0001", "m-0002"  # A: the opened box; B: a manhole node next to it
EDGE_USER = f"edge-{DISTRICT}-{ZONE}"


class NodeClient:
    """A paho client logged in as an account: persistent session, QoS 1, TLS with the
    site CA (none: the gateway-local plain listener)."""

    def __init__(self, port: int, user: str, password: str, ca: Path | None, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.username_pw_set(user, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.max_inflight_messages_set(100)
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

    def publish_all(self, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
        infos = [self.client.publish(t, p, qos=1, retain=retain) for t, p in messages]
        for info in infos:
            info.wait_for_publish(120)
            assert info.is_published(), "broker did not acknowledge a publish"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class SecuredSite:
    broker: MosquittoServer
    influx: InfluxDBServer
    ca: Path
    passwords: dict[str, str]
    db: str
    shared_group: str

    def node(self, user: str, client_id: str | None = None) -> NodeClient:
        """A client on the nodes' (TLS) listener with `user`'s password."""
        return NodeClient(self.broker.port, user, self.passwords[user], self.ca, client_id or user)

    def edge_client(self, client_id: str) -> NodeClient:
        """A client with the edge's account, on the gateway-local listener."""
        return NodeClient(self.broker.edge_port, EDGE_USER, self.passwords[EDGE_USER], None, client_id)

    def edge_config(
        self, folder: Path, shared: bool = False, extra: dict | None = None, buffer: dict | None = None
    ) -> Path:
        mqtt_extra = {"username": EDGE_USER, "password": self.passwords[EDGE_USER]}
        if shared:
            mqtt_extra["shared_group"] = self.shared_group
        return write_config(
            folder,
            mqtt_port=self.broker.edge_port,
            client_id=EDGE_USER,
            mqtt_extra=mqtt_extra,
            metrics=True,
            sinks=[v1_sink("district", self.influx, self.db)],
            extra=extra,
            buffer=buffer,
        )


def secured_site(folder: Path, mosquitto_factory, influx: InfluxDBServer, nodes=(A, B)) -> SecuredSite:
    pki = CertificateAuthority.create(folder / "pki")
    server = pki.issue("broker", folder / "pki", server_names=["127.0.0.1"])
    access = BrokerAccess(folder / "access")
    passwords = {node: access.add(node, "node", DISTRICT, ZONE) for node in nodes}
    passwords[EDGE_USER] = access.add(EDGE_USER, "edge", DISTRICT, ZONE)
    broker = mosquitto_factory(
        anonymous=False,
        tls=BrokerTLS(pki.files.cert, server.cert, server.key),
        password_file=access.passwd_path,
        acl_file=access.acl_path,
    )
    db = f"secured_{time.monotonic_ns()}"
    return SecuredSite(broker, influx, pki.files.cert, passwords, db, new_shared_group())


def manhole_readings(node: str, n: int, first_seq: int = 0) -> list[tuple[str, bytes]]:
    return [
        (
            topic(node, "telemetry"),
            codec.encode_reading(node, "manhole", 1, s, {"tilt_deg": 1.0}, ts=now_ms() - 600_000 + s),
        )
        for s in range(first_seq, first_seq + n)
    ]


def manhole_alarms(node: str, n: int, first_seq: int) -> list[tuple[str, bytes]]:
    return [
        (
            topic(node, "event"),
            codec.encode_event(node, "manhole", 1, s, "tilt", s % 2 == 0, ts=now_ms() - 600_000 + s),
        )
        for s in range(first_seq, first_seq + n)
    ]


def manhole_batches(node: str, n: int, per_message: int) -> list[tuple[str, bytes]]:
    """n readings of a node in batches, as a node replays its offline queue."""
    items = [codec.reading_item(1, s, {"tilt_deg": 1.0}, ts=now_ms() - 600_000 + s) for s in range(n)]
    return [
        (topic(node, "telemetry"), codec.encode_batch(node, "manhole", items[i : i + per_message]))
        for i in range(0, n, per_message)
    ]
