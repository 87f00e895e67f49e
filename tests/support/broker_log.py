"""A recording MQTT subscriber (paho-mqtt) for tests of nodes: it keeps every message it
receives, reconnects on its own, and uses a persistent session so a broker restart loses
nothing queued for it."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass

from tests.support.subscriber import subscribed_client
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
        self.client = subscribed_client(
            host,
            port,
            "log-" + uuid.uuid4().hex[:8],
            [(topic, 1) for topic in topics],
            self._on_message,
            clean_session=False,
            what="recording subscriber",
        )

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
