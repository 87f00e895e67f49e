"""Raw reading and event lines, formatted from cached series prefixes (edge.schema), are
byte for byte what influxdb-client's `Point` gives for the same record, as the edge wrote
them before: for every kind, any set of its fields, any finite value in range, the node's
time or an estimated or moved one, and every event with or without a value."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision

from edge import models, schema
from protocols import catalog

BASE = {"district": "xuhui", "zone": "caohejing", "node": "a-0001", "arrival_ms": 1795334340000, "boot": 3}


def point_line(r: models.ReadingBase) -> str:
    """The line as the edge built it with Point, one per record."""
    if isinstance(r, models.EventBase):
        p = Point(schema.EVENTS).tag("district", r.district).tag("zone", r.zone).tag("node", r.node)
        p.tag("kind", r.kind).tag("event", r.event).tag("severity", r.severity)  # type: ignore[attr-defined]
        p.field("state", r.state)
        if r.value is not None:
            p.field("value", float(r.value))
    else:
        p = Point(r.kind).tag("district", r.district).tag("zone", r.zone).tag("node", r.node)
        for name, value in r.fields.values().items():
            p.field(name, value)
    if r.time_estimated:
        p.field(schema.TIME_ESTIMATED, True)
    return p.time(r.ts, WritePrecision.MS).to_line_protocol()


def _value(spec: tuple) -> st.SearchStrategy:
    ftype, _, low, high = spec
    if ftype == catalog.BOOL:
        return st.booleans()
    return st.floats(low, high, allow_nan=False) | st.integers(int(low), int(high)).map(float)


@st.composite
def readings(draw) -> models.ReadingBase:
    kind = draw(st.sampled_from(catalog.KINDS))
    spec = catalog.fields_of(kind)
    names = draw(st.lists(st.sampled_from(sorted(spec)), min_size=1, unique=True))
    fields = {name: draw(_value(spec[name])) for name in names}
    data = {
        **BASE,
        "kind": kind,
        "node": draw(st.sampled_from(["a-0001", "p-9", "x"])),
        "seq": draw(st.integers(0, 2**32 - 1)),
        "ts": draw(st.integers(1577836800000, 1895334340000)),
        "time_source": draw(st.sampled_from(["node", "edge"])),
        "moved": draw(st.booleans()),
        "fields": fields,
    }
    if draw(st.booleans()):
        return models.READINGS[kind].model_validate(data)
    event = draw(st.sampled_from(catalog.events_of(kind)))
    value = draw(st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6))
    return models.EVENTS[kind].model_validate(
        {
            **data,
            "event": event,
            "state": draw(st.booleans()),
            "severity": draw(st.sampled_from(catalog.SEVERITIES)),
            "value": value,
            "fields": {},
        }
    )


@settings(max_examples=1000, deadline=None, database=None, derandomize=True)
@given(readings())
def test_lines_are_byte_identical_to_point(r):
    line = schema.event_line(r) if isinstance(r, models.EventBase) else schema.reading_line(r)
    assert line == point_line(r)


def test_whole_numbers_small_and_negative_values_as_point_writes_them():
    for value in (0.0, -0.0, 1.0, 35.0, -70.5, 1e-7, 123456789.0, 4294967295.0, 0.1 + 0.2, 5e-324):
        spec_ok = -130.0 <= value <= 0.0
        fields = {"uptime_s": abs(value)} if not spec_ok else {"rssi": value}
        r = models.READINGS["air"].model_validate(
            {**BASE, "kind": "air", "seq": 1, "ts": 1795334340000, "time_source": "node", "fields": fields}
        )
        assert schema.reading_line(r) == point_line(r)


def test_tags_with_characters_to_escape_as_point_escapes_them():
    for value in ("a b", "a,b", "a=b", "a\\", "a\\b", "tab\there", "new\nline", "é"):
        tags = (("district", value), ("zone", "z"), ("node", value + "n"))
        line = schema._prefix("air", *tags) + "x=1 5"
        p = Point("air").tag("district", value).tag("zone", "z").tag("node", value + "n")
        assert line == p.field("x", 1.0).time(5, WritePrecision.MS).to_line_protocol()
    assert schema._prefix("m ,x", ("k=1", "v")).startswith("m\\ \\,x,k\\=1=v ")
