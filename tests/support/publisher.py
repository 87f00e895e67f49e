"""Publishing to a real broker as nodes do: QoS 1, every PUBACK awaited."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Publisher:
    """A paho client that publishes QoS1 and waits for every PUBACK."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False):
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_all(self, messages: list[tuple[str, bytes]], timeout: float = 60) -> None:
        infos = [self.publish(t, p) for t, p in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not acknowledge a publish"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class PacedSender(threading.Thread):
    """Publishes in the background at about `per_second`, waiting for every PUBACK, until
    the messages run out or `finish()` is called. `published` counts the messages the
    broker acknowledged: after `finish()` and `join()`, exactly the first `published`."""

    def __init__(
        self, pub: Publisher, messages: list[tuple[str, bytes]], per_second: float, chunk: int
    ) -> None:
        super().__init__(daemon=True)
        self.pub, self.messages, self.per_second, self.chunk = pub, messages, per_second, chunk
        self.published = 0
        self.error: BaseException | None = None  # why it stopped early, if it did
        self._finish = threading.Event()

    def finish(self) -> None:
        """Stop after the chunk being published now."""
        self._finish.set()

    def run(self) -> None:
        try:
            self._send()
        except BaseException as err:  # kept for the test to see, not lost in a thread
            self.error = err

    def _send(self) -> None:
        pause = self.chunk / self.per_second
        for start in range(0, len(self.messages), self.chunk):
            if self._finish.is_set():
                return
            t0 = time.monotonic()
            part = self.messages[start : start + self.chunk]
            self.pub.publish_all(part, timeout=120)
            self.published += len(part)
            self._finish.wait(max(0.0, pause - (time.monotonic() - t0)))


def publish_paced(
    pub: Publisher, messages: list[tuple[str, bytes]], per_second: float, chunk: int = 20
) -> PacedSender:
    """Publish in the background at about `per_second`, waiting for every PUBACK."""
    sender = PacedSender(pub, messages, per_second, chunk)
    sender.start()
    return sender
