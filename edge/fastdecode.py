"""The edge's fast decoder: the same result as `protocols.decoder.decode`, sooner.

`protocols.decoder` is the reference: plain Python that also runs on MicroPython, with
the protocol's checks in the order SPEC.md section 8 fixes, so it names the reason of a
refusal. Here the JSON is parsed by msgspec (compiled; Python's own parser and the
reference's pure-Python checks were a fifth of the edge's CPU per reading) and a message
of the two channels that carry volume, telemetry and event, is checked in one pass that
only asks "is every rule met?". Every message that fails any check, or that has a shape
the pass does not handle (status, acks, no receiver clock, anything unexpected), goes to
the reference decoder, which then gives the result and the reason. So a refusal always
comes from the reference, and an acceptance here is only ever an acceptance there too
with an equal normalized message (key order, value types and all):
tests/edge/test_fast_decoder.py holds it to that on every golden vector and on 100,000
generated and mutated payloads.
"""

from __future__ import annotations

import math

import msgspec

from protocols import catalog, decoder
from protocols.codec import COUNTER_MAX, MAX_BATCH_BYTES, MAX_BATCH_ITEMS, MAX_MESSAGE_BYTES, TS_MIN_MS
from protocols.topics import EVENT, TELEMETRY, VERSION, parse_topic

_json = msgspec.json.Decoder()

_READING_KEYS = frozenset(decoder._READING_KEYS)
_BATCH_KEYS = frozenset(decoder._BATCH_KEYS)
_ITEM_KEYS = frozenset(decoder._ITEM_KEYS)
_EVENT_KEYS = frozenset(decoder._EVENT_KEYS)
_SEVERITIES = frozenset(catalog.SEVERITIES)

# Per kind: field name -> (is_bool, low, high), from the catalog.
_FIELDS = {
    kind: {
        name: (spec[0] == catalog.BOOL, spec[2], spec[3]) for name, spec in catalog.fields_of(kind).items()
    }
    for kind in catalog.KINDS
}
# Per kind: the events it may raise -> default severity.
_EVENTS = {
    kind: {name: catalog.EVENTS[name][1] for name in catalog.events_of(kind)} for kind in catalog.KINDS
}

# Topics seen, parsed: a zone's nodes publish on a few thousand topics at most. Bounded,
# because topics come from outside; it only ever holds topics the fast path takes.
_TOPICS_MAX = 50_000
_topics: dict[str, tuple[str, str, str, str]] = {}


class _Refer(Exception):
    """Not for the fast path: the reference decoder decides."""


def decode(topic: str, payload: bytes, now_ms: int | None = None) -> dict:
    """`protocols.decoder.decode(topic, payload, now_ms)`: the same normalized dict, or the
    same ProtocolError (raised by the reference itself)."""
    return decode_marked(topic, payload, now_ms)[0]


def fast_only(topic: str, payload: bytes, now_ms: int) -> dict | None:
    """The normalized message when the fast pass accepts it, else None: the reference
    decides, where the message is validated. The receiving process (edge.receiver)
    decodes here, on its own core, what the commit loop would otherwise decode."""
    try:
        return _fast(topic, payload, now_ms)
    except Exception:  # _Refer, or a shape this pass did not foresee
        return None


def decode_marked(topic: str, payload: bytes, now_ms: int | None = None) -> tuple[dict, bool]:
    """(message, True when the fast pass accepted it; False when the reference did)."""
    if now_ms is not None:
        try:
            return _fast(topic, payload, now_ms), True
        except Exception:  # _Refer, or a shape this pass did not foresee
            pass
    return decoder.decode(topic, payload, now_ms), False


def _where(topic: str) -> tuple[str, str, str, str]:
    where = _topics.get(topic)
    if where is None:
        version, district, zone, node, channel = parse_topic(topic)
        if version != VERSION or channel not in (TELEMETRY, EVENT):
            raise _Refer
        if len(_topics) >= _TOPICS_MAX:
            _topics.clear()
        where = _topics[topic] = (district, zone, node, channel)
    return where


def _fast(topic: str, payload: bytes, now_ms: int) -> dict:
    district, zone, node, channel = _where(topic)
    size = len(payload)
    if size > MAX_BATCH_BYTES or (channel != TELEMETRY and size > MAX_MESSAGE_BYTES):
        raise _Refer
    obj = _json.decode(payload)
    if type(obj) is not dict:
        raise _Refer
    v = obj["v"]
    kind = obj["kind"]
    if type(v) is not int or v != VERSION or obj["node"] != node or type(kind) is not str:
        raise _Refer
    spec = _FIELDS[kind]
    out = {"v": VERSION, "channel": channel, "district": district, "zone": zone, "node": node, "kind": kind}
    if channel == TELEMETRY:
        if "batch" not in obj:
            if size > MAX_MESSAGE_BYTES or not _READING_KEYS.issuperset(obj):
                raise _Refer
            out["readings"] = [_reading(obj, spec, now_ms)]
            return out
        items = obj["batch"]
        if (
            not _BATCH_KEYS.issuperset(obj)
            or type(items) is not list
            or not 0 < len(items) <= MAX_BATCH_ITEMS
        ):
            raise _Refer
        readings = []
        last = None
        for item in items:
            if type(item) is not dict or not _ITEM_KEYS.issuperset(item):
                raise _Refer
            reading = _reading(item, spec, now_ms)
            key = (reading["boot"], reading["seq"])
            if last is not None and key <= last:
                raise _Refer
            last = key
            readings.append(reading)
        if (_counter(obj["boot"]), _counter(obj["seq"])) != last:
            raise _Refer
        out["readings"] = readings
        return out
    if not _EVENT_KEYS.issuperset(obj):
        raise _Refer
    out["boot"] = _counter(obj["boot"])
    out["seq"] = _counter(obj["seq"])
    out["ts"], out["time_source"] = _time(obj, now_ms)
    name = obj["event"]
    default = _EVENTS[kind][name]
    state = obj["state"]
    severity = obj.get("severity", default)
    if type(state) is not bool or type(severity) is not str or severity not in _SEVERITIES:
        raise _Refer
    out["event"] = name
    out["state"] = state
    out["severity"] = severity
    value = obj.get("value")
    if value is not None:
        if type(value) is not float and type(value) is not int:
            raise _Refer
        value = float(value)
        if not math.isfinite(value):
            raise _Refer
    out["value"] = value
    out["fields"] = _fields(obj["fields"], spec) if "fields" in obj else {}
    return out


def _counter(value: object) -> int:
    if type(value) is not int or not 0 <= value <= COUNTER_MAX:
        raise _Refer
    return value


def _time(obj: dict, now_ms: int) -> tuple[int, str]:
    if "ts" in obj:
        ts = obj["ts"]
        if (
            "age_ms" in obj
            or type(ts) is not int
            or not TS_MIN_MS <= ts <= now_ms + decoder.MAX_CLOCK_AHEAD_MS
        ):
            raise _Refer
        return ts, "node"
    age = obj["age_ms"]
    if type(age) is not int or not 0 <= age <= decoder.MAX_AGE_MS:
        raise _Refer
    return now_ms - age, "edge"


def _fields(fields: object, spec: dict) -> dict:
    if type(fields) is not dict or not fields:
        raise _Refer
    out = {}
    for name, value in fields.items():
        is_bool, low, high = spec[name]
        if is_bool:
            if type(value) is not bool:
                raise _Refer
        else:
            if type(value) is not float and type(value) is not int:
                raise _Refer
            value = float(value)
            # A NaN fails both comparisons; an infinity lies outside every catalog range.
            if not low <= value <= high:
                raise _Refer
        out[name] = value
    return out


def _reading(obj: dict, spec: dict, now_ms: int) -> dict:
    boot = _counter(obj["boot"])
    seq = _counter(obj["seq"])
    ts, source = _time(obj, now_ms)
    return {"boot": boot, "seq": seq, "ts": ts, "time_source": source, "fields": _fields(obj["fields"], spec)}
