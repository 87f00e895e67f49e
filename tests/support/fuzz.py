"""Fuzz payloads generated and mutated from the golden vectors (protocols/vectors): the
seeds, hypothesis settings and strategies, and byte-level and structural mutators. The
decoder's fuzz test and the running edge's fuzz test draw on the same generators."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "vectors"
CASES = json.loads((VECTORS / "cases.json").read_text())
NOW = CASES["now_ms"]
SEEDS = [
    (c["topic"], (VECTORS / "payloads" / name).read_bytes())
    for name, c in sorted(CASES["cases"].items())
    if "decoder" not in c
]
VALID_OBJECTS = [
    (t, json.loads(p))
    for (t, p), c in zip(SEEDS, [c for n, c in sorted(CASES["cases"].items()) if "decoder" not in c])
    if "expect" in c
]
TOPICS = sorted({t for t, _ in SEEDS}) + ["city/v1/a/b/c/telemetry", "city/v1/a/b/c/cmd/ack", "x"]

FUZZ = settings(
    deadline=None, database=None, derandomize=True, print_blob=True, suppress_health_check=list(HealthCheck)
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)

SCALARS = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**32,
    2**63,
    -(2**64),
    1e308,
    -1e-308,
    "",
    "x" * 70,
    "p-0001",
    "parking",
    [],
    {},
    [1, "a"],
    {"a": {"b": [None]}},
    "\u0000",
    "\ud800",
]


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
            del data[pos : pos + rnd.randint(1, 16)]
        elif op == "splice":
            other = rnd.choice(SEEDS)[1]
            data = data[:pos] + bytearray(other[rnd.randint(0, len(other)) :])
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
