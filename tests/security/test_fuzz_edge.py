"""Fuzzing the running edge: 100,000 payloads generated and mutated from the golden vectors
(hypothesis and tests/support/fuzz.py, as in test_fuzz_decoder), plus the edge's own limits
(huge payloads, deep nesting, overlong topics) and exact copies (duplicates), published to a
real Mosquitto and taken in by `urbansense edge run`. Nothing may crash or hang it, and every message is
accounted for by the edge's own counters and tables:
sent = accepted (stored or duplicate) + quarantined, exactly."""

from __future__ import annotations

import collections
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.limits import MAX_TOPIC_CHARS
from edge.metrics import EDGE_REASONS
from edge.validate import DECODER_ERROR
from protocols import codec
from protocols.errors import REASONS
from tests.support.dead_letters import messages_by_reason
from tests.support.edge_process import EdgeProcess, v1_sink, write_config
from tests.support.fuzz import FUZZ, NOW, SEEDS, VALID_OBJECTS, json_values, mutate_bytes, mutate_json
from tests.support.publisher import Publisher
from tests.support.readings import now_ms
from tests.support.site import topic
from tests.support.waiting import wait_for

# CPU-bound (100,000 payloads): the suite's hang guard of 300 s is too close for them
# on two loaded cores.
pytestmark = pytest.mark.timeout(900)

TOTAL = 100_000
EXAMPLES, PER_EXAMPLE = 1_000, 100
RAW_DB = "security_fuzz"


def site_topic(t: str) -> str:
    """Topics the edge subscribes to (city/#): others would never reach it to be counted."""
    return t if t.startswith("city/") else "city/" + t


def mutate_topic(rnd: random.Random, t: str) -> str:
    parts = t.split("/")
    i = rnd.randrange(1, len(parts))
    parts[i] = rnd.choice(
        [
            "",
            "X",
            "p-0001",
            "a" * 33,
            "n" * (MAX_TOPIC_CHARS + 10),
            "v2",
            "telemetry",
            "event",
            "status",
            "cmd",
            parts[i] + "-x",
        ]
    )
    return "/".join(parts)


def edge_mutant(rnd: random.Random, value) -> tuple[str, bytes]:
    t, payload = rnd.choice(SEEDS)
    roll = rnd.random()
    if roll < 0.45:
        payload = mutate_bytes(rnd, payload)
    elif roll < 0.85:
        t, obj = rnd.choice(VALID_OBJECTS)
        payload = mutate_json(rnd, obj, value)
    elif roll < 0.90:
        pass  # an exact copy: a duplicate once stored
    elif roll < 0.93:
        payload = payload + b" " * rnd.choice((8192, 20_000, 300_000))
    elif roll < 0.96:
        depth = rnd.randint(30, 4000)
        payload = payload[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"
    else:
        t = mutate_topic(rnd, t)
    return site_topic(t), payload


def generate() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []

    @settings(FUZZ, max_examples=EXAMPLES)
    @given(st.randoms(use_true_random=True), json_values)
    def run(rnd: random.Random, value) -> None:
        for _ in range(PER_EXAMPLE):
            out.append(edge_mutant(rnd, value))

    run()
    return out


def shift_ts(messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The vectors are dated against a fixed clock; the edge uses the real one. Moving
    every `ts` by the same amount keeps the mutants valid or invalid as they were."""
    delta = str(now_ms() - NOW - 600_000)

    def shift(m):
        return b'"ts":' + str(int(m.group(1)) + int(delta)).encode()

    return [(t, re.sub(rb'"ts":(1[0-9]{12})\b', shift, p)) for t, p in messages]


@pytest.fixture
def fuzz_site(mosquitto_factory, _influxdb_session, tmp_path):
    # A broker of its own: the edge subscribes to city/#, and retained status messages that
    # other tests left on the session's broker would be delivered to it and counted.
    mq, influx = mosquitto_factory(), _influxdb_session
    config = write_config(
        tmp_path,
        mqtt_port=mq.port,
        client_id="edge-fuzz",
        metrics=True,
        mqtt_extra={"topics": ["city/#"]},
        buffer={"synchronous": "normal", "commit_max_messages": 2000, "dead_letter_max_rows": 2 * TOTAL},
        sinks=[v1_sink("district", influx, RAW_DB)],
    )
    edge = EdgeProcess(config).start()
    pub = Publisher(mq.port, "fuzz-publisher")
    yield edge, pub
    pub.close()
    assert edge.stop(60) == 0, edge.log_tail()


def counters(text: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for m in re.finditer(r'^urbansense_edge_(\w+)_total(?:\{\w+="([^"]*)"\})? (\S+)$', text, re.M):
        out[m.group(1)][m.group(2) or ""] = float(m.group(3))
    return out


def test_running_edge_accounts_for_every_fuzzed_message(fuzz_site):
    edge, pub = fuzz_site
    messages = shift_ts(generate())
    assert len(messages) >= TOTAL
    for start in range(0, len(messages), 5000):
        pub.publish_all(messages[start : start + 5000], timeout=120)
    # A valid reading last: once it is stored, everything before it has been taken in.
    sentinel = "z-0001"
    pub.publish_all(
        [
            (
                topic(sentinel, "telemetry"),
                codec.encode_reading(sentinel, "air", 1, 1, {"pm25": 1.0}, ts=now_ms()),
            )
        ]
    )
    sent = len(messages) + 1

    def taken() -> float:
        return sum(counters(edge.metrics_text())["messages_in"].values())

    wait_for(lambda: taken() >= sent, timeout=120, interval=0.5, what=f"{sent} messages taken in")
    assert edge.running()
    assert edge.query("SELECT count(*) FROM seen WHERE node=?", (sentinel,)) == [(1,)]

    c = counters(edge.metrics_text())
    by_channel = c["messages_in"]
    # Every message is accounted for. Beyond `sent` only what the broker delivered twice
    # (its DUP flag, after a dropped connection on a loaded machine) may be counted again:
    # a repeated reading is caught by identity, a repeated invalid message has none.
    redelivered = c["redelivered_messages"].get("", 0.0)
    assert sent <= sum(by_channel.values()) <= sent + redelivered, (by_channel, redelivered)
    # Quarantined: the counters and the dead-letter table agree, reason by reason.
    # (A node's first messages of each reason and minute are stored whole, the rest
    # counted in one row per node and reason: the table accounts for every one.)
    table = messages_by_reason(edge)
    assert by_channel["invalid"] == sum(table.values())
    assert {r: n for r, n in c["invalid_messages"].items() if n} == table
    assert set(table) <= set(REASONS) | set(EDGE_REASONS)
    assert DECODER_ERROR not in table, "the decoder failed in a way the protocol does not name"
    # The mix reached every stage: stored readings, duplicates and the limits.
    accepted = sent - by_channel["invalid"]
    assert accepted > 1000 and c["readings"][""] > 0 and c["duplicate_readings"][""] > 0, c
    assert table.get("too_large", 0) > 1000 and table.get("bad_topic", 0) > 1000, table
    # Each new reading or event has exactly one identity row; duplicates have none.
    identities = edge.query("SELECT count(*) FROM seen")[0][0]
    events = by_channel.get("event", 0)
    assert c["readings"][""] <= identities <= c["readings"][""] + events
