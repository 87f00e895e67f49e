"""Publishing to a clustered broker tier as a node does: QoS 1, every PUBACK awaited, and on a
lost member the next one in the list, where the unacknowledged messages are sent again
(at least once: the edge's identity index makes a second copy harmless). It paces with
tests/support/publisher.py's publish_paced like a Publisher."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class TierPublisher:
    def __init__(self, ports: list[int], client_id: str, first: int = 0) -> None:
        self.ports = ports
        self.member = first % len(ports)
        self.attempts = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 1)
        # paho has no list of servers; on_pre_connect runs just before each (re)connection
        # opens its socket, the one point at which it reads its host and port.
        self.client.on_pre_connect = self._next_member
        self.client.connect("127.0.0.1", ports[self.member])
        self.client.loop_start()

    def _next_member(self, client, userdata) -> None:
        self.attempts += 1
        if self.attempts > 1:
            self.member = (self.member + 1) % len(self.ports)
        client._port = self.ports[self.member]

    def publish_all(self, messages: list[tuple[str, bytes]], timeout: float = 120) -> None:
        """Every message PUBACKed, or AssertionError. A message handed to paho on a live
        connection is sent again by paho on the next one until acknowledged; one handed
        over while disconnected (rc != 0) is published again once connected."""
        deadline = time.monotonic() + timeout
        pending = list(messages)
        while pending:
            while not self.client.is_connected():
                assert time.monotonic() < deadline, "no member took the connection"
                time.sleep(0.05)
            infos = [(m, self.client.publish(m[0], m[1], qos=1)) for m in pending]
            pending = []
            for m, info in infos:
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    pending.append(m)
                    continue
                while not info.is_published():
                    assert time.monotonic() < deadline, "a publish was never acknowledged"
                    time.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
