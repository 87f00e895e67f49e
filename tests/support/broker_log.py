"""A recording MQTT subscriber (paho-mqtt) for tests of nodes: it keeps every message it
receives, reconnects on its own, and uses a persistent session so a broker restart loses
nothing queued for it."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from tests.support.waiting import wait_for


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> dict:
        return json.loads(self.payload)


class BrokerLog:
    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        self.topics = topics
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="log-" + uuid.uuid4().hex[:8], clean_session=False
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("recording subscriber could not subscribe")

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        for topic in self.topics:
            client.subscribe(topic, qos=1)
        self._subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def on(self, suffix: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition") -> None:
        """Poll until predicate(self) is true; fail with `what` after the timeout (a hang
        guard only: no test asserts on how long it took)."""
        wait_for(lambda: predicate(self), timeout, 0.05, what)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
