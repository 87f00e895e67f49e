"""A minimal paho-mqtt client for security tests: connect with given credentials and TLS
settings, report the CONNACK result, collect messages."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from tests.support.waiting import eventually


class Probe:
    def __init__(
        self,
        port: int,
        user: str | None = None,
        password: str | None = None,
        ca: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
        client_id: str | None = None,
    ) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{time.monotonic_ns()}"
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if ca is not None:
            self.client.tls_set(
                ca_certs=str(ca),
                certfile=str(cert) if cert else None,
                keyfile=str(key) if key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self.port = port
        self.connack: mqtt.ReasonCode | None = None
        self.connected = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = reason_code
        self.connected.set()

    def connect(self, timeout: float = 10.0) -> mqtt.ReasonCode | None:
        """Connect and wait for the CONNACK; None if none came (e.g. TLS failed)."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        self.connected.wait(timeout)
        return self.connack

    def ok(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        done.wait(10)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, bytes]]:
        """The messages so far, once there are `count` of them or the timeout has passed."""
        eventually(lambda: len(self.messages) >= count, timeout, 0.02)
        return list(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except Exception:
            pass
