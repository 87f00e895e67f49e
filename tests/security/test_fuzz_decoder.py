"""Fuzzing the receiver's decoder with payloads generated and mutated from the golden
vectors: every input is either accepted as a well-formed normalized message or rejected
with one of the protocol's reasons. Nothing else may happen (no other exception, no hang).

The running edge gets the same treatment in tests/edge (through a real broker)."""
from __future__ import annotations

import collections
import json
import math
import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from protocols import catalog
from protocols.decoder import decode
from protocols.errors import REASONS, ProtocolError

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "vectors"
CASES = json.loads((VECTORS / "cases.json").read_text())
NOW = CASES["now_ms"]
SEEDS = [(c["topic"], (VECTORS / "payloads" / name).read_bytes())
         for name, c in sorted(CASES["cases"].items()) if c.get("decoder") != "command"]
VALID_OBJECTS = [(t, json.loads(p)) for (t, p), c in
                 zip(SEEDS, [c for n, c in sorted(CASES["cases"].items()) if c.get("decoder") != "command"])
                 if "expect" in c]
TOPICS = sorted({t for t, _ in SEEDS}) + ["city/v1/a/b/c/telemetry", "city/v1/a/b/c/cmd/ack", "x"]

# Hypothesis drives the generation; each of its examples yields a burst of payloads from
# a random stream it controls (st.randoms), because per-example overhead would otherwise
# make 100,000 payloads cost minutes.
BYTE_EXAMPLES, BYTES_PER_EXAMPLE = 1_500, 40      # 60,000 byte-level mutants
JSON_EXAMPLES, JSON_PER_EXAMPLE = 2_000, 20       # 40,000 structural mutants
FUZZ = settings(deadline=None, database=None, derandomize=True, print_blob=True,
                suppress_health_check=list(HealthCheck))

json_scalars = (st.none() | st.booleans() | st.integers(-2**64, 2**64)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=12)


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


SCALARS = [None, True, False, 0, -1, 1.5, 2**32, 2**63, -2**64, 1e308, -1e-308, "", "x" * 70,
           "p-0001", "parking", [], {}, [1, "a"], {"a": {"b": [None]}}, "\u0000", "\ud800"]


def mutate_bytes(rnd: random.Random, payload: bytes) -> bytes:
    data = bytearray(payload)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.choice(("flip", "insert", "delete", "splice", "truncate"))
        pos = rnd.randint(0, max(len(data) - 1, 0))
        if op == "flip" and data:
            data[pos] ^= 1 << rnd.randint(0, 7)
        elif op == "insert":
            data[pos:pos] = rnd.randbytes(rnd.randint(1, 8))
        elif op == "delete":
            del data[pos:pos + rnd.randint(1, 16)]
        elif op == "splice":
            other = rnd.choice(SEEDS)[1]
            data = data[:pos] + bytearray(other[rnd.randint(0, len(other)):])
        else:
            data = data[:pos]
    return bytes(data)


def mutate_json(rnd: random.Random, obj: dict, value) -> bytes:
    obj = json.loads(json.dumps(obj))
    target = obj
    if "fields" in obj and rnd.random() < 0.5:
        target = obj["fields"]
    elif "batch" in obj and rnd.random() < 0.5:
        target = rnd.choice(obj["batch"])
        if rnd.random() < 0.5:
            target = target["fields"]
    key = rnd.choice(list(target) + ["extra", "ts", "age_ms", "batch", "v"])
    if rnd.random() < 0.2:
        target.pop(key, None)
    else:
        target[key] = value if rnd.random() < 0.5 else rnd.choice(SCALARS)
    return json.dumps(obj).encode()


@settings(FUZZ, max_examples=BYTE_EXAMPLES)
@given(st.randoms(use_true_random=False))
def _fuzz_bytes(rnd: random.Random) -> None:
    for _ in range(BYTES_PER_EXAMPLE):
        topic, payload = rnd.choice(SEEDS)
        if rnd.random() < 0.1:
            topic = rnd.choice(TOPICS)
        counts["bytes"] += 1
        outcomes["bytes"][check(topic, mutate_bytes(rnd, payload))] += 1


@settings(FUZZ, max_examples=JSON_EXAMPLES)
@given(st.randoms(use_true_random=False), json_values)
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
