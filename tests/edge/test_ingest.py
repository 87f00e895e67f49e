"""MqttIngest in-process against a real Mosquitto: what paho hands over reaches the inbox,
with the per-topic callback table paho looks every message up in replaced by an empty
stand-in (edge.ingest.NoTopicCallbacks)."""

from __future__ import annotations

import signal
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import edge.ingest as edge_ingest
from edge.config import load_config
from edge.ingest import Inbox, MqttIngest, NoTopicCallbacks
from tests.support.edge_process import write_config
from tests.support.site import topic


def test_messages_reach_the_inbox_past_no_per_topic_lookup(_mosquitto_session, tmp_path):
    mq = _mosquitto_session
    cfg = load_config(
        write_config(
            tmp_path,
            mqtt_port=mq.port,
            client_id="edge-ingest-test",
            # Never written to here: the config needs a sink.
            sinks=[{"name": "district", "url": "http://127.0.0.1:9", "api": "v1", "database": "d"}],
        )
    )
    inbox = Inbox()
    ingest = MqttIngest(cfg, inbox)
    # paho's attribute was found and replaced: if paho renames it, this fails rather than
    # the edge silently paying for the lookup again.
    assert isinstance(ingest.client._on_message_filtered, NoTopicCallbacks)
    with pytest.raises(TypeError):
        ingest.client.message_callback_add("city/#", lambda *a: None)
    ingest.start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edge-ingest-test-pub")
    try:
        assert ingest.connected.wait(10)
        pub.connect("127.0.0.1", mq.port)
        pub.loop_start()
        t = topic("i-0001", "telemetry")
        deadline = time.monotonic() + 20
        got = []
        while not got and time.monotonic() < deadline:
            # Sent again until the subscription is in place (it follows the CONNACK).
            pub.publish(t, b"{}", qos=1).wait_for_publish(5)
            got = inbox.take(10, 0.5)
        assert [(m.topic, m.payload, m.qos) for m in got[:1]] == [(t, b"{}", 1)]
        ingest.ack(got)
    finally:
        pub.disconnect()
        pub.loop_stop()
        ingest.stop()


def _config(tmp_path, port: int, client_id: str):
    return load_config(
        write_config(
            tmp_path,
            mqtt_port=port,
            client_id=client_id,
            sinks=[{"name": "district", "url": "http://127.0.0.1:9", "api": "v1", "database": "d"}],
        )
    )


def _take(inbox: Inbox, n: int) -> list:
    got: list = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        got += inbox.take(n - len(got), 0.5)
    assert len(got) == n, f"{len(got)} of {n} messages"
    return got


def _started(cfg, inbox: Inbox) -> MqttIngest:
    ingest = MqttIngest(cfg, inbox)
    ingest.start()
    assert ingest.connected.wait(10)
    return ingest


def _receive_group(ingest: MqttIngest, inbox: Inbox, pub: mqtt.Client, t: str, n: int = 50) -> list:
    """n messages published to `t` and taken from the inbox, once the subscription is in
    place (it follows the CONNACK: a first message, sent until it comes, shows it is; acked
    on its own)."""
    deadline = time.monotonic() + 20
    first: list = []
    while not first and time.monotonic() < deadline:
        pub.publish(t, b"ready", qos=1).wait_for_publish(5)
        first = inbox.take(100, 0.5)
    assert first
    ingest.ack(first)
    group = [pub.publish(t, f"m{i}".encode(), qos=1) for i in range(n)]
    for info in group:
        info.wait_for_publish(5)
    got: list = []
    while len(got) < n:
        [m] = _take(inbox, 1)
        if m.payload == b"ready":  # a second one, sent as the subscription came
            ingest.ack([m])
        else:
            got.append(m)
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(n)]
    return got


def _next_after_restart(cfg, pub: mqtt.Client, t: str) -> tuple[MqttIngest, bytes]:
    """A marker published, then the session taken up again: the first message it gets."""
    pub.publish(t, b"marker", qos=1).wait_for_publish(5)
    again = Inbox()
    ingest = _started(cfg, again)
    [next_one] = _take(again, 1)
    return ingest, next_one.payload


def _publisher(port: int, client_id: str) -> mqtt.Client:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    return pub


@pytest.mark.parametrize("acked", [True, False])
def test_a_group_acked_in_one_write_is_not_delivered_again(_mosquitto_session, tmp_path, acked):
    """Messages acked together (one write of all their PUBACKs) are done at the broker:
    after a reconnection of the persistent session the next message is a new one. Not
    acked, they come first again."""
    mq = _mosquitto_session
    cfg = _config(tmp_path, mq.port, f"edge-ack-{acked}")
    t = topic("i-0002", "telemetry")
    inbox = Inbox()
    ingest = _started(cfg, inbox)
    pub = _publisher(mq.port, f"edge-ack-pub-{acked}")
    try:
        got = _receive_group(ingest, inbox, pub, t)
        if acked:
            assert ingest.ack(got) == 50
        ingest.stop()
        ingest, next_one = _next_after_restart(cfg, pub, t)
        assert next_one == (b"marker" if acked else b"m0")
    finally:
        pub.disconnect()
        pub.loop_stop()
        ingest.stop()


def test_a_clean_stop_waits_for_the_broker_to_read_the_last_acks(_mosquitto_session, tmp_path, monkeypatch):
    """Written is not read: a restart that connects under the same client id before the
    broker has read the last PUBACKs takes the session over with that group still in
    flight, and the broker sends it again. stop() returns only once the broker has read
    them: while the broker reads nothing (SIGSTOP), stop() waits."""
    monkeypatch.setattr(edge_ingest, "STOP_FLUSH_S", 120.0)  # not the limit on a loaded machine
    mq = _mosquitto_session
    cfg = _config(tmp_path, mq.port, "edge-ack-barrier")
    t = topic("i-0003", "telemetry")
    inbox = Inbox()
    ingest = _started(cfg, inbox)
    pub = _publisher(mq.port, "edge-ack-barrier-pub")
    try:
        got = _receive_group(ingest, inbox, pub, t)
        assert ingest.ack(got) == 50
        assert mq.process is not None
        mq.process.send_signal(signal.SIGSTOP)
        try:
            stopping = threading.Thread(target=ingest.stop, daemon=True)
            stopping.start()
            # Only a duration can show that something waits; a stop that does not wait
            # returns at once (its packets fit the socket's buffer).
            stopping.join(1.0)
            assert stopping.is_alive(), "stop() returned while the broker could read nothing"
        finally:
            mq.process.send_signal(signal.SIGCONT)
        stopping.join(120)
        assert not stopping.is_alive()
        ingest, next_one = _next_after_restart(cfg, pub, t)
        assert next_one == b"marker"
    finally:
        pub.disconnect()
        pub.loop_stop()
        ingest.stop()
