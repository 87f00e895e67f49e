"""Every line the edge writes (raw readings, events, node health, rollups), formatted from
cached series prefixes (edge.schema), is byte for byte what influxdb-client's `Point`
gives for the same record, as the edge wrote them before: for every kind, any set of its
fields, any finite value in range, the node's time or an estimated or moved one, every
event with or without a value, health lines with any set of their fields and tag values
that need escaping, and rollups of any aggregates."""

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


# -- node health and rollups: formatted without Point too --------------------------------
def point_health_line(district, zone, node, kind, now_ms, **values) -> str | None:
    """The health line as the edge built it with Point."""
    p = Point(schema.NODE_HEALTH).tag("district", district).tag("zone", zone).tag("node", node)
    p.tag("kind", kind)
    any_field = False
    for name, value in values.items():
        if value is None:
            continue
        if name not in ("online", "fw", "clock_bad"):
            value = float(value)
        p.field(name, value)
        any_field = True
    return p.time(now_ms, WritePrecision.MS).to_line_protocol() if any_field else None


def point_rollup_line(kind, district, zone, node, minute_ms, agg, worker=None) -> str | None:
    """The rollup line as the edge built it with Point."""
    spec = catalog.fields_of(kind)
    p = Point(schema.rollup_measurement(kind)).tag("district", district).tag("zone", zone).tag("node", node)
    if worker:
        p.tag("worker", worker)
    any_field = False
    for name in sorted(agg):
        if name not in spec:
            continue
        a = agg[name]
        any_field = True
        if spec[name][0] == catalog.BOOL:
            p.field(f"{name}_frac", float(a[0]) / a[1]).field(f"{name}_last", bool(a[2]))
            p.field(f"{name}_count", float(a[1]))
        else:
            p.field(f"{name}_mean", float(a[0]) / a[3]).field(f"{name}_min", float(a[1]))
            p.field(f"{name}_max", float(a[2])).field(f"{name}_count", float(a[3]))
    return p.time(minute_ms, WritePrecision.MS).to_line_protocol() if any_field else None


# Tag values as nodes and sites may spell them (a node's fw is its own text).
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
NAMES = st.sampled_from(["xuhui", "a b", "a,b", "k=v", "back\\", "tab\tx", "new\nline", "é"])
NUMBERS = st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6)


@settings(max_examples=500, deadline=None, database=None, derandomize=True)
@given(
    NAMES,
    NAMES,
    NAMES,
    st.sampled_from(catalog.KINDS),
    st.integers(0, 2**42),
    st.fixed_dictionaries(
        {
            "online": st.none() | st.booleans(),
            "battery_v": NUMBERS,
            "rssi": NUMBERS,
            "last_seen": NUMBERS,
            "seq_gaps": NUMBERS,
            "fw": st.none() | TEXT,
            "clock_offset_ms": NUMBERS,
            "clock_bad": st.none() | st.booleans(),
            "dropped": NUMBERS,
            "ts_collisions": NUMBERS,
            "estimated_times": NUMBERS,
        }
    ),
)
def test_health_lines_are_byte_identical_to_point(district, zone, node, kind, now_ms, values):
    assert schema.health_line(district, zone, node, kind, now_ms, **values) == point_health_line(
        district, zone, node, kind, now_ms, **values
    )


@st.composite
def aggregates(draw) -> tuple[str, dict]:
    kind = draw(st.sampled_from(catalog.KINDS))
    spec = catalog.fields_of(kind)
    agg = {}
    for name in draw(st.lists(st.sampled_from([*sorted(spec), "unknown"]), unique=True)):
        count = draw(st.integers(1, 10**6))
        if name in spec and spec[name][0] == catalog.BOOL:
            agg[name] = [draw(st.integers(0, count)), count, draw(st.booleans()), 0, 1, 1]
        else:
            low, high = sorted([draw(st.floats(-1e9, 1e9)), draw(st.floats(-1e9, 1e9))])
            agg[name] = [draw(st.floats(-1e15, 1e15)), low, high, count]
    return kind, agg


@settings(max_examples=500, deadline=None, database=None, derandomize=True)
@given(aggregates(), NAMES, st.none() | st.sampled_from(["", "edge-1", "w x"]), st.integers(0, 2**42))
def test_rollup_lines_are_byte_identical_to_point(kind_agg, node, worker, minute_ms):
    kind, agg = kind_agg
    line = schema.rollup_line(kind, "xuhui", "caohejing", node, minute_ms, agg, worker)
    assert line == point_rollup_line(kind, "xuhui", "caohejing", node, minute_ms, agg, worker)


def test_the_edge_does_not_load_influxdb_client():
    """Lines are the edge's own; influxdb-client (half a second of imports) is loaded only
    for a v2 sink."""
    import subprocess
    import sys

    code = "import sys, edge.service; print('influxdb_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_numbers_that_are_not_finite_are_left_out_as_point_leaves_them():
    none = dict.fromkeys(["online", "battery_v", "rssi", "last_seen", "seq_gaps", "fw"])
    values = {**none, "battery_v": float("nan"), "rssi": -70.0, "last_seen": float("inf"), "online": True}
    line = schema.health_line("xuhui", "caohejing", "n-1", "air", 5, **values)
    assert line == point_health_line("xuhui", "caohejing", "n-1", "air", 5, **values)
    assert line is not None and "nan" not in line and "inf" not in line
    only_nan = {**none, "battery_v": float("nan")}
    assert schema.health_line("xuhui", "caohejing", "n-1", "air", 5, **only_nan) is None
