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
