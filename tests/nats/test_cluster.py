"""The rig's NATS cluster itself: three members that carry a persistent MQTT session across
members, and that come back from kill -9 and from a lost disk."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.services import MQTT_MESSAGES
from tests.support.publisher import Publisher
from tests.support.waiting import wait_for


class Subscriber:
    """A persistent (clean_session=False) QoS 1 session on one member, acking on arrival."""

    def __init__(self, port: int, client_id: str, topic: str) -> None:
        self.got: list[bytes] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_message = lambda c, u, msg: self._keep(msg.payload)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(20), "no SUBACK"

    def _keep(self, payload: bytes) -> None:
        with self._lock:
            self.got.append(payload)

    def payloads(self) -> set[bytes]:
        with self._lock:
            return set(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_session_queued_on_one_member_is_served_by_another(nats_cluster):
    a, b, c = nats_cluster.members
    sub = Subscriber(a.port, "cluster-sub", "city/v1/xuhui/caohejing/+/telemetry")
    sub.close()  # the session stays, and queues what comes while it is away
    pub = Publisher(b.port, "cluster-pub")
    try:
        pub.publish_all([(f"city/v1/xuhui/caohejing/n{i}/telemetry", b"%d" % i) for i in range(50)])
    finally:
        pub.close()
    back = Subscriber(c.port, "cluster-sub", "city/v1/xuhui/caohejing/+/telemetry")
    try:
        wait_for(lambda: len(back.payloads()) >= 50, 30, what="the 50 queued messages on member 3")
        assert back.payloads() == {b"%d" % i for i in range(50)}
    finally:
        back.close()


def test_members_come_back_from_kill_and_a_lost_disk(nats_cluster):
    leader = nats_cluster.stream_leader(MQTT_MESSAGES)
    nats_cluster.restart_member(leader, kill=True)
    victim = nats_cluster.members[0]
    nats_cluster.restart_member(victim, kill=True, wipe_disk=True)
    assert all(m.healthy() for m in nats_cluster.members)
    # The wiped member holds the replicated streams again, and serves MQTT.
    assert MQTT_MESSAGES in wait_for(victim.stream_leaders, 30, what="streams on the wiped member")
    pub = Publisher(victim.port, "after-wipe")
    try:
        pub.publish_all([("city/v1/xuhui/caohejing/n1/telemetry", b"x")])
    finally:
        pub.close()
