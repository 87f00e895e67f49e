"""What the running edge enforces on every message, through a real Mosquitto: identity
(topic node == payload node, kind == the registry's), the per-node rate limit, and the
size, topic-length and nesting limits. Every refusal is a dead letter with its reason and
moves the counters; the edge keeps running and the other nodes are untouched."""

from __future__ import annotations

import time

import pytest

from edge.deadletters import SAMPLE_PER_NODE
from edge.limits import KEEP_BYTES, MAX_DEPTH, MAX_TOPIC_CHARS
from protocols import codec
from tests.support.dead_letters import messages_by_reason
from tests.support.edge_process import EdgeProcess, v1_sink, write_config
from tests.support.metrics import metric
from tests.support.publisher import Publisher
from tests.support.readings import now_ms
from tests.support.site import topic
from tests.support.waiting import wait_for

RAW_DB = "security_limits"
NODE_RATE = 1.0  # messages/s per node, sustained
NODE_BURST = 10
EVENT_BURST = 5


@pytest.fixture(scope="module")
def site(_mosquitto_session, _influxdb_session, tmp_path_factory):
    mq, influx = _mosquitto_session, _influxdb_session
    folder = tmp_path_factory.mktemp("edge-limits")
    config = write_config(
        folder,
        mqtt_port=mq.port,
        # One session per set-up: the runner may set this module up twice on one broker.
        client_id=folder.name,
        metrics=True,
        sinks=[v1_sink("district", influx, RAW_DB)],
        extra={
            "limits": {
                "node_rate": NODE_RATE,
                "node_burst": NODE_BURST,
                "event_rate": 0.5,
                "event_burst": EVENT_BURST,
            }
        },
    )
    edge = EdgeProcess(config).start()
    pub = Publisher(mq.port, "limits-publisher")
    yield edge, pub
    pub.close()
    assert edge.stop() == 0, edge.log_tail()


def reading(node: str, seq: int, kind: str = "air") -> bytes:
    fields = {"pm25": 12.0} if kind == "air" else {"occupied": True}
    return codec.encode_reading(node, kind, 1, seq, fields, ts=now_ms() - 60_000 + seq)


def stored(edge: EdgeProcess, node: str) -> int:
    """Readings and events of a node the edge accepted (its identity index)."""
    return edge.query("SELECT count(*) FROM seen WHERE node=?", (node,))[0][0]


def dead(edge: EdgeProcess, reason: str, like: str = "%") -> list[tuple]:
    return edge.query(
        "SELECT topic, payload, detail FROM dead_letters WHERE reason=? AND topic LIKE ? ORDER BY id",
        (reason, like),
    )


def accounted(edge: EdgeProcess, reason: str, like: str) -> int:
    """Messages quarantined with a reason: stored whole (a node's sample each minute) or
    counted in the node's counting row."""
    return messages_by_reason(edge, like).get(reason, 0)


def invalid_count(edge: EdgeProcess, reason: str) -> float:
    return metric(edge.metrics_text(), "urbansense_edge_invalid_messages_total", f'reason="{reason}"') or 0.0


def test_payload_naming_another_node_is_id_mismatch(site):
    edge, pub = site
    before = invalid_count(edge, "id_mismatch")
    # The broker's ACL stops a node publishing under another's topic; this is the other
    # half: a payload that claims to be someone else on the node's own topic.
    pub.publish_all(
        [
            (topic("i-0001", "telemetry"), reading("i-0002", 1)),
            (topic("i-0001", "event"), codec.encode_event("i-0002", "air", 1, 2, "pm25", True, ts=now_ms())),
        ]
    )
    wait_for(lambda: len(dead(edge, "id_mismatch", "%/i-0001/%")) == 2, what="two id_mismatch")
    assert stored(edge, "i-0001") == 0 and stored(edge, "i-0002") == 0
    assert invalid_count(edge, "id_mismatch") == before + 2
    assert not edge.query("SELECT node FROM nodes WHERE node IN ('i-0001', 'i-0002')")


def test_kind_other_than_the_registry_knows_is_kind_mismatch(site):
    edge, pub = site
    node = "k-0001"
    before = invalid_count(edge, "kind_mismatch")
    pub.publish_all([(topic(node, "telemetry"), reading(node, 1, "parking"))])
    wait_for(lambda: stored(edge, node) == 1, what="the first reading")
    # Same node id now claiming to be an air sensor: telemetry and an event.
    pub.publish_all(
        [
            (topic(node, "telemetry"), reading(node, 2, "air")),
            (topic(node, "event"), codec.encode_event(node, "air", 1, 3, "pm25", True, ts=now_ms())),
        ]
    )
    wait_for(lambda: len(dead(edge, "kind_mismatch", f"%/{node}/%")) == 2, what="two kind_mismatch")
    assert stored(edge, node) == 1
    assert invalid_count(edge, "kind_mismatch") == before + 2
    assert edge.query("SELECT kind FROM nodes WHERE node=?", (node,)) == [("parking",)]


def test_flooding_node_is_throttled_and_counted_others_unaffected(site):
    edge, pub = site
    flooder, others = "r-0001", [f"r-{i:04d}" for i in range(2, 7)]
    sent = 120
    t0 = time.monotonic()
    flood = [(topic(flooder, "telemetry"), reading(flooder, s)) for s in range(sent)]
    # The flooder also raises an alarm: events have their own bucket, so it gets through.
    flood.append(
        (topic(flooder, "event"), codec.encode_event(flooder, "air", 1, sent, "pm25", True, ts=now_ms()))
    )
    normal = []
    for n in others:
        normal += [(topic(n, "telemetry"), reading(n, s)) for s in range(3)]
        normal.append((topic(n, "event"), codec.encode_event(n, "air", 1, 3, "pm25", True, ts=now_ms())))
    pub.publish_all(flood + normal)
    wait_for(lambda: all(stored(edge, n) == 4 for n in others), what="every other node's readings and alarm")
    elapsed = time.monotonic() - t0
    wait_for(
        lambda: stored(edge, flooder) + accounted(edge, "rate_limited", f"%/{flooder}/%") == sent + 1,
        what="every flooder message stored or quarantined",
    )
    limited = accounted(edge, "rate_limited", f"%/{flooder}/%")
    # The bucket lets through the burst and the rate over the time the flood took, no more.
    assert limited >= sent - NODE_BURST - NODE_RATE * (elapsed + 1)
    rows = dead(edge, "rate_limited", f"%/{flooder}/%")
    assert all(t.endswith("/telemetry") for t, _, _ in rows)
    # A sample of the throttled messages keeps its payload; the rest are counted, so
    # nothing is silently lost and the flooder cannot fill the buffer.
    payloads = {p for _, p in flood}
    sample = [bytes(p) for _, p, _ in rows if p is not None]
    assert 0 < len(sample) <= SAMPLE_PER_NODE and len(set(sample)) == len(sample)
    assert all(p in payloads for p in sample)
    # The flooder's alarm was accepted.
    assert edge.query("SELECT count(*) FROM seen WHERE node=? AND seq=?", (flooder, sent)) == [(1,)]
    text = edge.metrics_text()
    assert metric(text, "urbansense_edge_throttled_messages_total", f'node="{flooder}"') == limited
    for n in others:
        assert metric(text, "urbansense_edge_throttled_messages_total", f'node="{n}"') is None
        assert not dead(edge, "rate_limited", f"%/{n}/%")


def test_event_flood_has_its_own_bucket(site):
    edge, pub = site
    node = "e-0001"
    events = [
        (topic(node, "event"), codec.encode_event(node, "air", 1, s, "pm25", s % 2 == 0, ts=now_ms() + s))
        for s in range(40)
    ]
    pub.publish_all(events)
    wait_for(
        lambda: stored(edge, node) + accounted(edge, "rate_limited", f"%/{node}/%") == 40,
        what="every event stored or quarantined",
    )
    assert len(dead(edge, "rate_limited", f"%/{node}/%")) > 0
    # ... and its telemetry bucket is untouched by the event flood.
    pub.publish_all([(topic(node, "telemetry"), reading(node, 100))])
    wait_for(
        lambda: edge.query("SELECT count(*) FROM seen WHERE node=? AND seq=100", (node,)) == [(1,)],
        what="the reading after an event flood",
    )


def test_oversize_payload_is_too_large_and_kept_clipped(site):
    edge, pub = site
    node = "s-0001"
    big = b'{"v":1,"node":"s-0001","kind":"air","x":"' + b"A" * 200_000 + b'"}'
    pub.publish_all([(topic(node, "telemetry"), big)])
    wait_for(lambda: dead(edge, "too_large", f"%/{node}/%"), what="too_large")
    [(_, payload, detail)] = dead(edge, "too_large", f"%/{node}/%")
    assert bytes(payload) == big[:KEEP_BYTES]
    assert str(len(big)) in detail


def test_deep_nesting_is_refused_before_parsing(site):
    edge, pub = site
    node = "s-0002"
    depth = 3_000  # under the 8 KiB batch limit; json.loads would recurse out
    deep = b'{"v":1,"node":"s-0002","kind":"air","x":' + b"[" * depth + b"]" * depth + b"}"
    assert len(deep) < 8192
    shallow_enough = (
        b'{"v":1,"node":"s-0002","kind":"air","x":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    )
    pub.publish_all(
        [
            (topic(node, "telemetry"), deep),
            (topic(node, "telemetry"), shallow_enough),
            (topic(node, "telemetry"), reading(node, 1)),
        ]
    )
    wait_for(lambda: stored(edge, node) == 1, what="the valid reading after the deep one")
    [(_, _, detail)] = dead(edge, "too_large", f"%/{node}/%")
    assert f"{depth + 1} levels" in detail  # the arrays and the object around them
    # One level inside the limit goes on to the decoder, which names its own problem.
    assert [
        r[0]
        for r in edge.query(
            "SELECT reason FROM dead_letters WHERE topic=? ORDER BY id", (topic(node, "telemetry"),)
        )
    ] == ["too_large", "unknown_field"]
    assert edge.running()


def test_overlong_topic_is_bad_topic_and_stored_clipped(site):
    edge, pub = site
    node = "n" * 1000  # one topic level: the + of the subscription matches it
    pub.publish_all([(topic(node, "telemetry"), reading("s-0003", 1))])
    wait_for(lambda: dead(edge, "bad_topic", "%nnnnnnnnnn%"), what="bad_topic")
    [(stored_topic, _, detail)] = dead(edge, "bad_topic", "%nnnnnnnnnn%")
    assert len(stored_topic) == MAX_TOPIC_CHARS + 3
    assert str(len(topic(node, "telemetry"))) in detail


def test_auto_rate_follows_each_nodes_reporting_interval(mosquitto_factory, _influxdb_session, tmp_path):
    """node_rate = "auto": 5x the rate a node's reported interval implies. A node at a 5 s
    interval may send 1 msg/s, one at 600 s a message every 2 minutes: after the burst, the
    slow node's flood is throttled almost entirely, the fast node's only beyond 1 msg/s."""
    # A broker of its own: retained status messages of the same node ids left by other
    # tests would otherwise reach this edge's registry.
    mq, influx = mosquitto_factory(), _influxdb_session
    config = write_config(
        tmp_path,
        mqtt_port=mq.port,
        client_id="edge-limits-auto",
        metrics=True,
        sinks=[v1_sink("district", influx, RAW_DB)],
        extra={"limits": {"node_rate": "auto", "node_burst": 5}},
    )
    edge = EdgeProcess(config).start()
    pub = Publisher(mq.port, "limits-auto-publisher")
    try:
        slow, fast = "a-0001", "a-0002"
        pub.publish_all(
            [
                (topic(n, "status"), codec.encode_status(n, "air", 1, 0, "online", interval_s=i, ts=now_ms()))
                for n, i in ((slow, 600), (fast, 5))
            ]
        )
        wait_for(
            lambda: edge.query("SELECT count(*) FROM nodes WHERE interval_s IS NOT NULL") == [(2,)],
            what="both intervals in the registry",
        )
        # The statuses took one token each: 4 of the burst of 5 are left per node.
        t0 = time.monotonic()
        pub.publish_all([(topic(slow, "telemetry"), reading(slow, s)) for s in range(30)])
        wait_for(
            lambda: stored(edge, slow) + accounted(edge, "rate_limited", f"%/{slow}/%") == 30,
            what="the slow node's flood accounted for",
        )
        elapsed = time.monotonic() - t0
        allowed = 4 + (5 / 600) * (elapsed + 1)
        assert stored(edge, slow) <= allowed
        # The fast node sends two messages a second for 6 s: its 1 msg/s refills about six
        # tokens over that time, so well over its burst of 4 gets through, and the rest is
        # throttled; the slow node, sending beside it, gets nothing more.
        for s in range(12):
            pub.publish_all(
                [
                    (topic(fast, "telemetry"), reading(fast, s)),
                    (topic(slow, "telemetry"), reading(slow, 100 + s)),
                ]
            )
            time.sleep(0.5)
        wait_for(
            lambda: stored(edge, fast) + accounted(edge, "rate_limited", f"%/{fast}/%") == 12,
            what="the fast node's messages accounted for",
        )
        assert 7 <= stored(edge, fast) < 12
        assert stored(edge, slow) <= allowed + 1
    finally:
        pub.close()
        assert edge.stop() == 0, edge.log_tail()
