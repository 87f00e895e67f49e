"""The commit loop in-process on a real SQLite buffer: one typed record per channel, one
handler per record type, and a group commit of every channel at once."""

from __future__ import annotations

import json
import time

import pytest

from edge import deadletters, outbox, schema
from edge.buffer import DurableBuffer
from edge.ingest import Inbox, Incoming
from edge.metrics import EdgeMetrics
from edge.outbox import Stream
from edge.pipeline import CommitLoop
from edge.registry import NodeRegistry
from edge.rollups import RollupBook
from edge.validate import (
    ACCEPTED,
    AckAccepted,
    EventAccepted,
    Rejected,
    StatusAccepted,
    TelemetryAccepted,
    Validator,
)
from protocols import codec
from protocols.decoder import decode
from protocols.errors import BAD_JSON
from protocols.topics import NODE_CHANNELS, alarm_topic

D, Z = "xuhui", "caohejing"


def topic(node: str, channel: str) -> str:
    return f"city/v1/{D}/{Z}/{node}/{channel}"


@pytest.fixture
def loop(tmp_path):
    acked: list[Incoming] = []

    def ack(batch: list[Incoming]) -> int:
        acked.extend(batch)
        return len(batch)

    buf = DurableBuffer(tmp_path / "buffer.db")
    consumers = {
        Stream.RAW: ["district"],
        Stream.HEALTH: ["district"],
        Stream.EVENT: ["district"],
        Stream.ALARM: ["alarms"],
    }
    commit_loop = CommitLoop(
        buf, NodeRegistry(), RollupBook(), EdgeMetrics(), Inbox(), ack, consumers, want_rollups=False
    )
    commit_loop.prepare()
    yield commit_loop, acked
    commit_loop.close()


def incoming(mid: int, topic_: str, payload: bytes) -> Incoming:
    return Incoming(mid, 1, topic_, payload, int(time.time() * 1000), 0, None)


def test_every_node_channel_has_one_record_type_and_one_handler(loop):
    loop, _ = loop
    assert set(ACCEPTED) == set(NODE_CHANNELS)
    assert {cls.channel for cls in ACCEPTED.values()} == set(NODE_CHANNELS)
    assert set(loop.handlers) == set(ACCEPTED.values())


def test_validation_returns_the_record_of_the_channel():
    v = Validator(lambda node: None)
    now = int(time.time() * 1000)
    ts = now - 1000
    cases = {
        TelemetryAccepted: (
            topic("a-1", "telemetry"),
            codec.encode_batch(
                "a-1",
                "air",
                [
                    codec.reading_item(1, 1, {"pm25": 1.0}, ts=ts),
                    codec.reading_item(1, 2, {"pm25": 2.0}, ts=ts + 1),
                ],
            ),
        ),
        EventAccepted: (
            topic("m-1", "event"),
            codec.encode_event("m-1", "manhole", 1, 3, "cover-open", True, value=37.5, ts=ts),
        ),
        StatusAccepted: (
            topic("p-1", "status"),
            codec.encode_status("p-1", "parking", 2, 0, "online", fw="1.0"),
        ),
        AckAccepted: (topic("l-1", "cmd/ack"), codec.encode_ack("l-1", "leak", 1, 4, "c-1", True)),
    }
    for cls, (t, payload) in cases.items():
        record = v.check(t, payload, now)
        assert type(record) is cls, (cls, record)
        assert record.sender == (t.split("/")[4], decode(t, payload, now)["kind"])
    telemetry = v.check(*cases[TelemetryAccepted], now)
    assert [r.seq for r in telemetry.readings] == [1, 2] == [r.seq for r in telemetry.identified]
    event = v.check(*cases[EventAccepted], now)
    assert event.identified == (event.event,)
    assert event.alarm_topic == alarm_topic(D, Z, "m-1", "cover-open")
    # the alarm is the decoder's normalized message, byte for byte what it always was
    assert event.alarm == json.dumps(decode(*cases[EventAccepted], now), separators=(",", ":"))
    assert v.check(*cases[StatusAccepted], now).identified == ()
    rejected = v.check(topic("a-1", "telemetry"), b"{", now)
    assert isinstance(rejected, Rejected) and rejected.reason == BAD_JSON


def test_one_group_of_every_channel_lands_in_its_tables(loop):
    loop, acked = loop
    ts = int(time.time() * 1000) - 5000
    reading = codec.encode_reading("a-1", "air", 1, 1, {"pm25": 12.0, "battery_v": 3.5}, ts=ts)
    event = codec.encode_event("m-1", "manhole", 1, 3, "cover-open", True, value=37.5, ts=ts)
    batch = [
        incoming(1, topic("a-1", "telemetry"), reading),
        incoming(2, topic("a-1", "telemetry"), reading),  # a redelivery
        incoming(3, topic("m-1", "event"), event),
        incoming(
            4,
            topic("p-1", "status"),
            codec.encode_status("p-1", "parking", 2, 0, "online", fw="1.4.2", interval_s=60),
        ),
        incoming(5, topic("l-1", "cmd/ack"), codec.encode_ack("l-1", "leak", 1, 4, "c-1", True)),
        incoming(6, topic("a-1", "telemetry"), b"{"),
    ]
    loop.commit(batch)
    assert [m.mid for m in acked] == [1, 2, 3, 4, 5, 6]  # after the commit, all of them
    conn = loop.buffer.connect(readonly=True)
    raw = outbox.read(conn, Stream.RAW, 0, 100)
    assert [r.body for r in raw] == [
        schema.reading_line(loop.validator.check(batch[0].topic, reading, batch[0].arrival_ms).readings[0])
    ]
    events = outbox.read(conn, Stream.EVENT, 0, 100)
    assert len(events) == 1 and events[0].body.startswith("events,district=xuhui,event=cover-open")
    alarms = outbox.read(conn, Stream.ALARM, 0, 100)
    assert len(alarms) == 1 and alarms[0].topic == alarm_topic(D, Z, "m-1", "cover-open")
    assert json.loads(alarms[0].body)["event"] == "cover-open"
    assert conn.execute("SELECT count(*) FROM seen").fetchone()[0] == 2
    nodes = loop.registry.nodes
    assert set(nodes) == {"a-1", "m-1", "p-1", "l-1"}
    assert nodes["p-1"].fw == "1.4.2" and nodes["p-1"].interval_s == 60
    assert nodes["a-1"].battery_v == 3.5 and all(s.online for s in nodes.values())
    assert [d["reason"] for d in deadletters.newest(conn, 10)] == [BAD_JSON]
    conn.close()
    sample = loop.metrics.registry.get_sample_value
    for channel, n in (("telemetry", 2), ("event", 1), ("status", 1), ("cmd/ack", 1), ("invalid", 1)):
        assert sample("urbansense_edge_messages_in_total", {"channel": channel}) == n, channel
    assert sample("urbansense_edge_duplicate_readings_total") == 1
    assert sample("urbansense_edge_readings_total") == 1
