"""Fuzzing the receiver's decoder with payloads generated and mutated from the golden
vectors: every input is either accepted as a well-formed normalized message or rejected
with one of the protocol's reasons. Nothing else may happen (no other exception, no hang).

The running edge gets the same payloads in test_fuzz_edge.py (through a real broker)."""

from __future__ import annotations

import collections
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import catalog
from protocols.decoder import decode
from protocols.errors import REASONS, ProtocolError
from tests.support.fuzz import FUZZ, NOW, SEEDS, TOPICS, VALID_OBJECTS, json_values, mutate_bytes, mutate_json

# CPU-bound (100,000 payloads): the suite's hang guard of 300 s is too close for them
# on two loaded cores.
pytestmark = pytest.mark.timeout(900)

# Hypothesis drives the generation; each of its examples yields a burst of payloads from
# a random stream it seeds (st.randoms), because per-example overhead would otherwise
# make 100,000 payloads cost minutes. The stream is Python's own generator seeded by
# hypothesis (use_true_random): with a stream hypothesis controls draw by draw, every
# random call went through its engine, and the drawing took several times the decoding.
BYTE_EXAMPLES, BYTES_PER_EXAMPLE = 1_500, 40  # 60,000 byte-level mutants
JSON_EXAMPLES, JSON_PER_EXAMPLE = 1_000, 40  # 40,000 structural mutants


def check(topic: str, payload: bytes) -> str:
    """Decode; return 'ok' or the reason. Fail on anything else, or a malformed result."""
    try:
        msg = decode(topic, payload, NOW)
    except ProtocolError as err:
        assert err.reason in REASONS, err.reason
        return err.reason
    assert msg["v"] == 1 and msg["kind"] in catalog.KINDS
    fields_spec = catalog.fields_of(msg["kind"])
    for reading in msg.get("readings", [msg]) if msg["channel"] in ("telemetry", "event") else []:
        assert isinstance(reading["ts"], int)
        for name, value in reading["fields"].items():
            ftype, _, low, high = fields_spec[name]
            if ftype == catalog.BOOL:
                assert isinstance(value, bool)
            else:
                assert isinstance(value, float) and math.isfinite(value) and low <= value <= high
    return "ok"


counts = {"bytes": 0, "json": 0}
outcomes: dict[str, collections.Counter] = {"bytes": collections.Counter(), "json": collections.Counter()}


@settings(FUZZ, max_examples=BYTE_EXAMPLES)
@given(st.randoms(use_true_random=True))
def _fuzz_bytes(rnd: random.Random) -> None:
    for _ in range(BYTES_PER_EXAMPLE):
        topic, payload = rnd.choice(SEEDS)
        if rnd.random() < 0.1:
            topic = rnd.choice(TOPICS)
        counts["bytes"] += 1
        outcomes["bytes"][check(topic, mutate_bytes(rnd, payload))] += 1


@settings(FUZZ, max_examples=JSON_EXAMPLES)
@given(st.randoms(use_true_random=True), json_values)
def _fuzz_json(rnd: random.Random, value) -> None:
    for _ in range(JSON_PER_EXAMPLE):
        topic, obj = rnd.choice(VALID_OBJECTS)
        counts["json"] += 1
        outcomes["json"][check(topic, mutate_json(rnd, obj, value))] += 1


def test_seed_vectors_pass_the_checker():
    outcomes = {check(t, p) for t, p in SEEDS}
    assert "ok" in outcomes and len(outcomes) > 5


def test_decoder_survives_mutated_bytes():
    _fuzz_bytes()
    assert counts["bytes"] >= BYTE_EXAMPLES * BYTES_PER_EXAMPLE
    # The mutants reach deep into the decoder, not just its JSON parser.
    assert len(outcomes["bytes"]) >= 8 and outcomes["bytes"]["ok"] > 0, outcomes["bytes"]


def test_decoder_survives_mutated_json():
    _fuzz_json()
    assert counts["json"] >= JSON_EXAMPLES * JSON_PER_EXAMPLE
    assert len(outcomes["json"]) >= 10 and outcomes["json"]["ok"] > 0, outcomes["json"]
