"""MqttIngest in-process against a real Mosquitto: what paho hands over reaches the inbox,
with the per-topic callback table paho looks every message up in replaced by an empty
stand-in (edge.ingest.NoTopicCallbacks)."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

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


@pytest.mark.parametrize("acked", [True, False])
def test_a_group_acked_in_one_write_is_not_delivered_again(_mosquitto_session, tmp_path, acked):
    """Messages acked together (one write of all their PUBACKs) are done at the broker:
    after a reconnection of the persistent session the next message is a new one. Not
    acked, they come first again."""
    mq = _mosquitto_session
    cfg = _config(tmp_path, mq.port, f"edge-ack-{acked}")
    t = topic("i-0002", "telemetry")
    inbox = Inbox()
    ingest = MqttIngest(cfg, inbox)
    ingest.start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-ack-pub-{acked}")
    pub.connect("127.0.0.1", mq.port)
    pub.loop_start()
    try:
        assert ingest.connected.wait(10)
        # The subscription follows the CONNACK: a first message, sent until it comes,
        # shows it is in place (acked on its own).
        deadline = time.monotonic() + 20
        first: list = []
        while not first and time.monotonic() < deadline:
            pub.publish(t, b"ready", qos=1).wait_for_publish(5)
            first = inbox.take(100, 0.5)
        assert first
        ingest.ack(first)
        group = [pub.publish(t, f"m{i}".encode(), qos=1) for i in range(50)]
        for info in group:
            info.wait_for_publish(5)
        got: list = []
        while len(got) < 50:
            [m] = _take(inbox, 1)
            if m.payload == b"ready":  # a second one, sent as the subscription came
                ingest.ack([m])
            else:
                got.append(m)
        assert [m.payload for m in got] == [f"m{i}".encode() for i in range(50)]
        if acked:
            assert ingest.ack(got) == 50
        # The PUBACKs are on their way before the DISCONNECT (one queue of packets).
        ingest.stop()
        pub.publish(t, b"marker", qos=1).wait_for_publish(5)
        again = Inbox()
        ingest = MqttIngest(cfg, again)
        ingest.start()
        assert ingest.connected.wait(10)
        [next_one] = _take(again, 1)
        assert next_one.payload == (b"marker" if acked else b"m0")
    finally:
        pub.disconnect()
        pub.loop_stop()
        ingest.stop()
