"""A subscribed paho-mqtt client for the tests' recorders and stand-ins: it subscribes at
every connect (so a broker restart does not leave it deaf), reconnects on its own, and is
returned once the broker has answered its first SUBSCRIBE."""

from __future__ import annotations

import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def subscribed_client(
    host: str,
    port: int,
    client_id: str,
    topics: list[tuple[str, int]],
    on_message: Callable[..., None],
    *,
    clean_session: bool = True,
    what: str = "subscriber",
    timeout: float = 10.0,
) -> mqtt.Client:
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
    client.on_connect = lambda c, userdata, flags, reason, props: c.subscribe(topics)
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = on_message
    client.reconnect_delay_set(0.2, 1.0)
    client.connect(host, port, keepalive=10)
    client.loop_start()
    if not subscribed.wait(timeout):
        client.loop_stop()
        raise RuntimeError(f"{what} could not subscribe to {[t for t, _ in topics]}")
    return client
