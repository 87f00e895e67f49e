"""The edge's fast decoder against the reference decoder, result for result.

`edge.fastdecode` parses with msgspec and checks telemetry and events in one pass; what it
does not accept goes to `protocols.decoder`. Here both run on every golden vector and on
more than 100,000 generated and mutated payloads (hypothesis draws the random streams):
the fast pass on its own (`_fast`) must accept exactly what the reference accepts among
the messages it takes, with an equal normalized message (same keys in the same order,
same values of the same types: compared by repr), and must never accept what the
reference refuses; `decode` as a whole must give the reference's result or its reason on
every payload. The payloads reach the size limits (1 KiB for one reading, 8 KiB and 64
items for a batch), the nesting limit (32 levels), JSON the two parsers might read
differently (duplicate keys, number spellings, whitespace, a BOM, huge integers, escapes)
and every kind, field, event and time form of the catalog.
"""

from __future__ import annotations

import collections
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import fastdecode
from protocols import catalog
from protocols.codec import COUNTER_MAX, MAX_BATCH_ITEMS, TS_MIN_MS
from protocols.decoder import MAX_AGE_MS, MAX_CLOCK_AHEAD_MS, decode
from protocols.errors import ProtocolError
from tests.support.fuzz import (
    CASES,
    FUZZ,
    NODE_CASES,
    NOW,
    SEEDS,
    TOPICS,
    VALID_OBJECTS,
    VECTORS,
    json_values,
    mutate_bytes,
    mutate_json,
)

# CPU-bound (100,000 payloads): the suite's hang guard of 300 s is too close for them
# on two loaded cores.
pytestmark = pytest.mark.timeout(900)

DISTRICT, ZONE = "xuhui", "caohejing"


def reference(topic: str, payload: bytes, now: int | None) -> str:
    try:
        return "ok " + repr(decode(topic, payload, now))
    except ProtocolError as err:
        return "reason " + err.reason
    except Exception as err:  # what the reference raises beyond the protocol's reasons
        return "error " + type(err).__name__


def fast_only(topic: str, payload: bytes, now: int) -> str | None:
    """The fast pass alone: the message it accepts, or None where it hands over."""
    try:
        return "ok " + repr(fastdecode._fast(topic, payload, now))
    except Exception:
        return None


def whole(topic: str, payload: bytes, now: int | None) -> str:
    try:
        return "ok " + repr(fastdecode.decode(topic, payload, now))
    except ProtocolError as err:
        return "reason " + err.reason
    except Exception as err:
        return "error " + type(err).__name__


tally: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def compare(family: str, topic: str, payload: bytes, now: int | None = NOW) -> None:
    """The fast pass against the reference on one payload; `decode` as a whole on every
    tenth (it is the fast pass, else the reference: the fast pass is what needs proving)."""
    want = reference(topic, payload, now)
    fast = fast_only(topic, payload, now) if now is not None else None
    if fast is not None:
        assert fast == want, (topic, payload, want, fast)
        tally[family]["fast"] += 1
    tally[family][want.split(" ", 1)[0]] += 1
    if tally[family]["seen"] % 10 == 0:
        got = whole(topic, payload, now)
        assert got == want, (topic, payload, want, got)
    tally[family]["seen"] += 1


# -- generated messages: valid ones of every kind, near every bound ------------------------
def _number(rnd: random.Random, low: float, high: float) -> object:
    pick = rnd.random()
    if pick < 0.15:
        return rnd.choice((low, high))  # the bounds themselves
    if pick < 0.25:
        return rnd.choice((low - 1e-9, high + 1e-9, low - 1, high + 1))  # just outside
    if pick < 0.4:
        return rnd.randint(int(low), int(high))  # an integer, which the decoder makes a float
    if pick < 0.45:
        return rnd.choice((-0.0, 0, 1e-300, 5e-324, 2**53 + 1, 0.1 + 0.2))
    return rnd.uniform(low, high)


def _fields(rnd: random.Random, kind: str) -> dict:
    spec = catalog.fields_of(kind)
    names = rnd.sample(sorted(spec), rnd.randint(1, len(spec)))
    out = {}
    for name in names:
        ftype, _, low, high = spec[name]
        out[name] = rnd.random() < 0.95 if ftype == catalog.BOOL else _number(rnd, low, high)
        if ftype == catalog.BOOL and rnd.random() < 0.5:
            out[name] = not out[name]
    return out


def _time(rnd: random.Random) -> dict:
    pick = rnd.random()
    if pick < 0.45:
        return {"ts": rnd.choice((NOW - rnd.randint(0, 10**9), TS_MIN_MS, NOW + MAX_CLOCK_AHEAD_MS))}
    if pick < 0.9:
        return {"age_ms": rnd.choice((0, rnd.randint(0, 10**7), MAX_AGE_MS))}
    return rnd.choice(
        ({}, {"ts": NOW, "age_ms": 5}, {"ts": TS_MIN_MS - 1}, {"age_ms": MAX_AGE_MS + 1}, {"ts": float(NOW)})
    )


def _counter(rnd: random.Random) -> int:
    return rnd.choice((0, 1, rnd.randint(0, 5000), COUNTER_MAX))


def generated(rnd: random.Random) -> tuple[str, dict]:
    """A message as a node would send it (mostly valid), as (topic, object)."""
    kind = rnd.choice(catalog.KINDS)
    node = f"{kind[0]}-{rnd.randint(0, 9999):04d}"
    channel = rnd.choice(("telemetry", "telemetry", "telemetry", "event"))
    topic = f"city/v1/{DISTRICT}/{ZONE}/{node}/{channel}"
    obj: dict = {"v": 1, "node": node, "kind": kind}
    if channel == "telemetry" and rnd.random() < 0.35:
        boot = _counter(rnd) % 1000
        seq = rnd.randint(0, 100)
        items = []
        # Mostly a few items (as a node replays its queue), now and then at the limit.
        count = (
            rnd.randint(1, 6)
            if rnd.random() < 0.9
            else rnd.choice((MAX_BATCH_ITEMS - 1, MAX_BATCH_ITEMS, MAX_BATCH_ITEMS + 1))
        )
        for _ in range(count):
            seq += rnd.choice((1, 1, 1, 2)) if rnd.random() < 0.98 else 0
            items.append({"boot": boot, "seq": seq, **_time(rnd), "fields": _fields(rnd, kind)})
        obj.update(boot=boot, seq=seq if rnd.random() < 0.97 else seq + 1, batch=items)
    elif channel == "telemetry":
        obj.update(boot=_counter(rnd), seq=_counter(rnd), **_time(rnd), fields=_fields(rnd, kind))
    else:
        names = catalog.events_of(kind)
        obj.update(boot=_counter(rnd), seq=_counter(rnd), **_time(rnd))
        obj["event"] = rnd.choice(names) if rnd.random() < 0.95 else rnd.choice(list(catalog.EVENTS))
        obj["state"] = rnd.random() < 0.5
        if rnd.random() < 0.5:
            obj["severity"] = rnd.choice(catalog.SEVERITIES)
        if rnd.random() < 0.5:
            obj["value"] = rnd.choice((None, rnd.uniform(-1e6, 1e6), rnd.randint(-100, 100)))
        if rnd.random() < 0.3:
            obj["fields"] = _fields(rnd, kind)
    return topic, obj


def spelled(rnd: random.Random, obj: dict) -> bytes:
    """JSON text of an object, spelled as any writer might: spacing, key order, number forms."""
    text = json.dumps(obj, separators=rnd.choice(((",", ":"), (", ", ": "), (",\n", " :\t"))))
    pick = rnd.random()
    if pick < 0.05:
        text = "\r\n " + text + " \n"
    elif pick < 0.08:
        text = "\ufeff" + text  # a BOM: not JSON, for both
    elif pick < 0.11:
        text = text.replace(".0,", ".00e0,").replace(".0}", "E0}")  # floats spelled otherwise
    elif pick < 0.14:
        text = text.replace('"v": 1', '"v": 1.0').replace('"v":1', '"v":1e0')
    elif pick < 0.17:
        text = text.replace('"node"', '"no\\u0064e"')  # an escaped key
    elif pick < 0.22:
        # A duplicate key: the last one counts, where the first one stood (both parsers).
        key = rnd.choice(("v", "node", "kind", "boot", "seq", "ts", "age_ms", "fields", "state"))
        value = json.dumps(rnd.choice((1, 0, "x", None, True, [], {}, NOW, 2.5)))
        text = text[:-1] + f',"{key}":{value}' + "}"
    elif pick < 0.24:
        text = text.replace("1,", "100000000000000000000000000000000000000000,", 1)  # huge integer
    elif pick < 0.26:
        text = text.replace("1,", "1e400,", 1)  # overflows to infinity, or is refused
    elif pick < 0.28:
        text = text + " x"  # trailing garbage
    return text.encode()


# -- the golden vectors -----------------------------------------------------------------------
def test_every_golden_vector_gives_the_reference_result():
    for name, case in NODE_CASES:
        payload = (VECTORS / "payloads" / name).read_bytes()
        compare("vectors", case["topic"], payload, CASES["now_ms"])
        compare("vectors", case["topic"], payload, None)  # no receiver clock: the reference decides
    for name, case in NODE_CASES:  # decode as a whole, on every vector
        payload = (VECTORS / "payloads" / name).read_bytes()
        assert whole(case["topic"], payload, NOW) == reference(case["topic"], payload, NOW)
    # The vectors that the reference accepts, the fast pass accepts by itself (except the
    # channels it hands over: status and acks).
    accepted = [
        c for _, c in NODE_CASES if "expect" in c and c["expect"]["channel"] in ("telemetry", "event")
    ]
    assert tally["vectors"]["fast"] == len(accepted) > 5, tally["vectors"]


# -- 100,000+ generated and mutated payloads ----------------------------------------------------
GEN_EXAMPLES, GEN_PER_EXAMPLE = 1_000, 40  # 40,000 generated messages, variously spelled
MUT_EXAMPLES, MUT_PER_EXAMPLE = 1_000, 40  # 40,000 of them mutated byte- or structure-wise
SEED_EXAMPLES, SEED_PER_EXAMPLE = 1_000, 25  # 25,000 mutants of the golden vectors


@settings(FUZZ, max_examples=GEN_EXAMPLES)
@given(st.randoms(use_true_random=True))
def _fuzz_generated(rnd: random.Random) -> None:
    for _ in range(GEN_PER_EXAMPLE):
        topic, obj = generated(rnd)
        compare("generated", topic, spelled(rnd, obj))


@settings(FUZZ, max_examples=MUT_EXAMPLES)
@given(st.randoms(use_true_random=True), json_values)
def _fuzz_mutated(rnd: random.Random, value) -> None:
    for _ in range(MUT_PER_EXAMPLE):
        topic, obj = generated(rnd)
        if rnd.random() < 0.5:
            payload = mutate_json(rnd, obj, value)
        else:
            payload = mutate_bytes(rnd, json.dumps(obj, separators=(",", ":")).encode())
        if rnd.random() < 0.05:
            topic = rnd.choice(TOPICS)
        compare("mutated", topic, payload)


@settings(FUZZ, max_examples=SEED_EXAMPLES)
@given(st.randoms(use_true_random=True), json_values)
def _fuzz_seeds(rnd: random.Random, value) -> None:
    for _ in range(SEED_PER_EXAMPLE):
        if rnd.random() < 0.5:
            topic, payload = rnd.choice(SEEDS)
            payload = mutate_bytes(rnd, payload)
        else:
            topic, obj = rnd.choice(VALID_OBJECTS)
            payload = mutate_json(rnd, obj, value)
        compare("seeds", topic, payload)


def test_generated_messages_give_the_reference_result():
    _fuzz_generated()
    t = tally["generated"]
    assert t["ok"] + t["reason"] + t["error"] >= GEN_EXAMPLES * GEN_PER_EXAMPLE
    # Most are valid and taken by the fast pass; every kind of refusal is there too.
    assert t["fast"] == t["ok"] > 15_000 and t["reason"] > 5_000, t


def test_mutated_messages_give_the_reference_result():
    _fuzz_mutated()
    t = tally["mutated"]
    assert t["ok"] + t["reason"] + t["error"] >= MUT_EXAMPLES * MUT_PER_EXAMPLE
    assert t["fast"] > 1_000 and t["reason"] > 10_000, t


def test_mutated_golden_vectors_give_the_reference_result():
    _fuzz_seeds()
    t = tally["seeds"]
    assert t["ok"] + t["reason"] + t["error"] >= SEED_EXAMPLES * SEED_PER_EXAMPLE
    assert t["fast"] > 100 and t["reason"] > 10_000, t


# -- the limits -----------------------------------------------------------------------------
def _batch(items: int, pad: int = 0) -> tuple[str, bytes]:
    node = "a-0001"
    batch = [
        {"boot": 1, "seq": i + 1, "ts": NOW - 1000 + i, "fields": {"pm25": float(i) + pad * 0.001}}
        for i in range(items)
    ]
    obj = {"v": 1, "node": node, "kind": "air", "boot": 1, "seq": items, "batch": batch}
    text = json.dumps(obj, separators=(",", ":"))
    return f"city/v1/{DISTRICT}/{ZONE}/{node}/telemetry", (text[:-1] + " " * pad + "}").encode()


def test_size_and_nesting_limits_give_the_reference_result():
    # Batches around 64 items and around 8 KiB, one reading around 1 KiB.
    topic, base = _batch(40)
    for items in (1, 63, 64, 65):
        compare("limits", *_batch(items))
    for pad in range(8192 - len(base) - 3, 8192 - len(base) + 3):
        compare("limits", topic, _batch(40, pad)[1])
    reading = {
        "v": 1,
        "node": "a-0001",
        "kind": "air",
        "boot": 1,
        "seq": 1,
        "ts": NOW,
        "fields": {"pm25": 1.0},
    }
    text = json.dumps(reading)
    for pad in range(1024 - len(text) - 3, 1024 - len(text) + 3):
        compare("limits", "city/v1/xuhui/caohejing/a-0001/telemetry", (text[:-1] + " " * pad + "}").encode())
        compare("limits", "city/v1/xuhui/caohejing/a-0001/event", (text[:-1] + " " * pad + "}").encode())
    # Nesting at and around 32 levels, inside fields and in a batch item.
    for depth in (30, 31, 32, 33, 40, 2000):
        nested = "[" * depth + "]" * depth
        compare("limits", "city/v1/xuhui/caohejing/a-0001/telemetry", text.replace("1.0", nested).encode())
        compare("limits", *_batch(1))
        compare("limits", "city/v1/xuhui/caohejing/a-0001/telemetry", ('{"v":1,"x":' + nested + "}").encode())
    # A valid message with brackets inside its strings is not nested.
    compare(
        "limits",
        "city/v1/xuhui/caohejing/a-0001/telemetry",
        text.replace('"air"', '"[[[[{{{{"' * 10).encode(),
    )
    assert tally["limits"]["fast"] > 5 and tally["limits"]["reason"] > 10, tally["limits"]
