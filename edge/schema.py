"""Line protocol for every measurement of edge/SCHEMA.md, built with influxdb-client's
`Point`. This module is the one place that knows the schema: measurement names, tags,
field names and their fixed types. Lines are built once, at ingest, and stored in the
buffer, so forwarding is plain concatenation and a replay writes byte-identical points.
"""

from __future__ import annotations

from influxdb_client import Point, WritePrecision

from edge.models import EventBase, ReadingBase
from protocols import catalog
from protocols.names import EVENTS, NODE_HEALTH, rollup_measurement

MS = WritePrecision.MS
TIME_ESTIMATED = "time_estimated"  # bool field of readings and events: the edge estimated the time


def _site(point: Point, district: str, zone: str, node: str) -> Point:
    return point.tag("district", district).tag("zone", zone).tag("node", node)


def reading_line(r: ReadingBase) -> str:
    """Raw reading: measurement = kind, the fields the node sent, the reading's own time."""
    p = _site(Point(r.kind), r.district, r.zone, r.node)
    for name, value in r.fields.values().items():
        # Catalog floats are floats in Python already (the decoder converts), so Point
        # never writes them as integers (`1i`): a field keeps one type for ever.
        p.field(name, value)
    return _timed(p, r)


def event_line(e: EventBase) -> str:
    p = _site(Point(EVENTS), e.district, e.zone, e.node)
    p.tag("kind", e.kind).tag("event", e.event).tag("severity", e.severity)
    p.field("state", e.state)
    if e.value is not None:
        p.field("value", float(e.value))
    return _timed(p, e)


def _timed(p: Point, r: ReadingBase) -> str:
    """The point at the record's time, marked `time_estimated` when the node did not
    measure that time itself (a point whose time it measured is written as it always was)."""
    if r.time_estimated:
        p.field(TIME_ESTIMATED, True)
    return p.time(r.ts, MS).to_line_protocol()


def series_of(r: ReadingBase) -> str:
    """The record's series within its node, as short as it can be (the timestamp index
    keeps one per reading): "" for a raw reading (a node has one kind, so one
    measurement), "event/severity" for an event (the `events` tags beyond the node's)."""
    if isinstance(r, EventBase):
        return f"{r.event}/{r.severity}"
    return ""


def health_line(
    district: str,
    zone: str,
    node: str,
    kind: str,
    now_ms: int,
    *,
    online: bool | None,
    battery_v: float | None,
    rssi: float | None,
    last_seen: float | None,
    seq_gaps: float | None,
    fw: str | None,
    clock_offset_ms: float | None = None,
    clock_bad: bool | None = None,
    dropped: float | None = None,
    ts_collisions: float | None = None,
    estimated_times: float | None = None,
) -> str | None:
    p = _site(Point(NODE_HEALTH), district, zone, node).tag("kind", kind)
    any_field = False
    for name, value in (
        ("online", online),
        ("battery_v", battery_v),
        ("rssi", rssi),
        ("last_seen", last_seen),
        ("seq_gaps", seq_gaps),
        ("fw", fw),
        ("clock_offset_ms", clock_offset_ms),
        ("clock_bad", clock_bad),
        ("dropped", dropped),
        ("ts_collisions", ts_collisions),
        ("estimated_times", estimated_times),
    ):
        if value is None:
            continue
        if name not in ("online", "fw", "clock_bad"):
            value = float(value)
        p.field(name, value)
        any_field = True
    if not any_field:
        return None
    return p.time(now_ms, MS).to_line_protocol()


# --- one-minute rollups ------------------------------------------------------------
# An aggregate is a dict field -> list, JSON-serialisable so the buffer can keep it:
#   float field: [sum, min, max, count]
#   bool field:  [true_count, count, last_value, last_ts, last_boot, last_seq]


def minute_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % 60000


def aggregate_add(agg: dict, r: ReadingBase) -> None:
    spec = catalog.fields_of(r.kind)
    for name, value in r.fields.values().items():
        if spec[name][0] == catalog.BOOL:
            a = agg.get(name)
            key = (r.ts, r.boot, r.seq)
            if a is None:
                agg[name] = [int(value), 1, value, r.ts, r.boot, r.seq]
            else:
                a[0] += int(value)
                a[1] += 1
                if key >= (a[3], a[4], a[5]):
                    a[2], a[3], a[4], a[5] = value, r.ts, r.boot, r.seq
        else:
            a = agg.get(name)
            if a is None:
                agg[name] = [value, value, value, 1]
            else:
                a[0] += value
                a[1] = min(a[1], value)
                a[2] = max(a[2], value)
                a[3] += 1


def rollup_line(
    kind: str, district: str, zone: str, node: str, minute_ms: int, agg: dict, worker: str | None = None
) -> str | None:
    spec = catalog.fields_of(kind)
    p = _site(Point(rollup_measurement(kind)), district, zone, node)
    if worker:
        p.tag("worker", worker)
    any_field = False
    for name in sorted(agg):
        if name not in spec:
            continue
        a = agg[name]
        any_field = True
        if spec[name][0] == catalog.BOOL:
            p.field(f"{name}_frac", float(a[0]) / a[1])
            p.field(f"{name}_last", bool(a[2]))
            p.field(f"{name}_count", float(a[1]))
        else:
            p.field(f"{name}_mean", float(a[0]) / a[3])
            p.field(f"{name}_min", float(a[1]))
            p.field(f"{name}_max", float(a[2]))
            p.field(f"{name}_count", float(a[3]))
    if not any_field:
        return None
    return p.time(minute_ms, MS).to_line_protocol()
