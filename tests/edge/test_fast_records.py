"""Records of messages the fast decoder accepted are built without validating them again
(`edge.models.checked_readings_of`, `checked_event_of`): they must equal, field for
field, the records `model_validate` builds from the same message, for every golden vector
and for generated readings, batches and events of every kind. And the Validator gives
the same outcome through either path."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from edge import models
from edge.fastdecode import decode_marked
from edge.validate import Rejected, TelemetryAccepted, Validator
from protocols import catalog
from tests.support.fuzz import NODE_CASES, NOW, VECTORS

ARRIVAL = NOW + 7


def same(a, b) -> None:
    assert a == b
    assert type(a) is type(b)
    assert a.model_fields_set == b.model_fields_set
    assert a.fields.values() == b.fields.values()
    assert a.fields.model_fields_set == b.fields.model_fields_set
    assert a.model_dump() == b.model_dump()
    assert a.time_estimated == b.time_estimated
    moved = a.model_copy(update={"ts": a.ts + 1, "moved": True})
    assert moved == b.model_copy(update={"ts": b.ts + 1, "moved": True}) and moved.time_estimated


def check(topic: str, payload: bytes) -> bool:
    """Compare both ways of building the records; True if the fast decoder took it."""
    try:
        message, fast = decode_marked(topic, payload, NOW)
    except Exception:
        return False
    if message["channel"] == "telemetry":
        for a, b in zip(
            models.checked_readings_of(message, ARRIVAL), models.readings_of(message, ARRIVAL), strict=True
        ):
            same(a, b)
    elif message["channel"] == "event":
        same(models.checked_event_of(message, ARRIVAL), models.event_of(message, ARRIVAL))
    return fast


def test_golden_vectors_build_equal_records():
    taken = [check(c["topic"], (VECTORS / "payloads" / name).read_bytes()) for name, c in NODE_CASES]
    assert sum(taken) > 5


@st.composite
def messages(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(catalog.KINDS))
    spec = catalog.fields_of(kind)

    def fields():
        names = draw(st.lists(st.sampled_from(sorted(spec)), min_size=1, max_size=4, unique=True))
        return {
            n: draw(st.booleans())
            if spec[n][0] == catalog.BOOL
            else draw(st.floats(spec[n][2], spec[n][3]) | st.integers(int(spec[n][2]), int(spec[n][3])))
            for n in names
        }

    def time():
        return draw(st.sampled_from([{"ts": NOW - 5000}, {"age_ms": 1234}, {"age_ms": 0}]))

    channel = draw(st.sampled_from(["telemetry", "batch", "event"]))
    obj: dict = {"v": 1, "node": "n-1", "kind": kind, "boot": 2}
    if channel == "telemetry":
        obj.update(seq=draw(st.integers(0, 2**32 - 1)), **time(), fields=fields())
    elif channel == "batch":
        n = draw(st.integers(1, 5))
        obj.update(seq=n, batch=[{"boot": 2, "seq": i + 1, **time(), "fields": fields()} for i in range(n)])
        channel = "telemetry"
    else:
        obj.update(
            seq=9, **time(), event=draw(st.sampled_from(catalog.events_of(kind))), state=draw(st.booleans())
        )
        if draw(st.booleans()):
            obj["value"] = draw(st.floats(-1e9, 1e9) | st.integers(-5, 5))
        if draw(st.booleans()):
            obj["severity"] = draw(st.sampled_from(catalog.SEVERITIES))
        if draw(st.booleans()):
            obj["fields"] = fields()
    return f"city/v1/xuhui/caohejing/n-1/{channel}", json.dumps(obj).encode()


@settings(max_examples=1000, deadline=None, database=None, derandomize=True)
@given(messages())
def test_generated_messages_build_equal_records(message):
    assert check(*message)


def test_validator_refuses_a_field_integer_too_big_for_a_float():
    # float() of a 400-digit integer raises OverflowError in CPython (MicroPython gives
    # inf): either way the protocol's out_of_range, the same as an infinite number.
    payload = b'{"v":1,"node":"a-1","kind":"air","boot":1,"seq":1,"ts":%d,"fields":{"pm25":1%s}}' % (
        NOW,
        b"0" * 400,
    )
    outcome = Validator(lambda node: None).check("city/v1/xuhui/caohejing/a-1/telemetry", payload, NOW)
    assert isinstance(outcome, Rejected) and outcome.reason == "out_of_range", outcome
    infinite = payload.replace(b"1" + b"0" * 400, b"1e999")  # a JSON number parsed as inf
    assert outcome == Validator(lambda node: None).check(
        "city/v1/xuhui/caohejing/a-1/telemetry", infinite, NOW
    )
    good = payload.replace(b"1" + b"0" * 400, b"12.5")
    assert isinstance(
        Validator(lambda node: None).check("city/v1/xuhui/caohejing/a-1/telemetry", good, NOW),
        TelemetryAccepted,
    )
