"""Line protocol for every measurement of edge/SCHEMA.md. This module is the one place
that knows the schema: measurement names, tags, field names and their fixed types. Lines
are built once, at ingest, and stored in the buffer, so forwarding is plain concatenation
and a replay writes byte-identical points.

Raw readings and events, one line per record, are formatted here from a cached prefix
per series (measurement and escaped tags, sorted by key) and the catalog's field types:
building an influxdb-client `Point` per reading was a sixth of the edge's CPU per
reading. The output is byte for byte what `Point.to_line_protocol` gives for the same
record (tests/edge/test_line_protocol.py holds it to that); the rest (node health,
rollups: a few lines a second) is built with `Point`.
"""

from __future__ import annotations

from influxdb_client import Point, WritePrecision
from influxdb_client.client.write.point import _ESCAPE_KEY, _ESCAPE_MEASUREMENT

from edge.models import EventBase, ReadingBase
from protocols import catalog
from protocols.names import EVENTS, NODE_HEALTH, rollup_measurement

MS = WritePrecision.MS
TIME_ESTIMATED = "time_estimated"  # bool field of readings and events: the edge estimated the time


def _site(point: Point, district: str, zone: str, node: str) -> Point:
    return point.tag("district", district).tag("zone", zone).tag("node", node)


# -- raw readings and events: formatted from cached parts --------------------------------
# The escaping of the line protocol, as influxdb-client's Point applies it (its tables, so
# both give the same bytes).
PREFIXES_MAX = 100_000  # series prefixes kept (a zone's nodes have a few each)
_prefixes: dict[tuple[str, ...], str] = {}
_keys: dict[str, str] = {}  # field name -> escaped


def _tag_value(value: str) -> str:
    out = value.translate(_ESCAPE_KEY)
    return out + " " if out.endswith("\\") else out  # as Point: no escaped space at the end


def _prefix(measurement: str, *tags: tuple[str, str]) -> str:
    """`measurement,tag=value,... ` with the tags sorted by key, made once per series."""
    key = (measurement, *(v for _, v in tags))
    prefix = _prefixes.get(key)
    if prefix is None:
        parts = [measurement.translate(_ESCAPE_MEASUREMENT)]
        parts += [f"{k.translate(_ESCAPE_KEY)}={_tag_value(v)}" for k, v in sorted(tags) if v != ""]
        if len(_prefixes) >= PREFIXES_MAX:
            _prefixes.clear()
        prefix = _prefixes[key] = ",".join(parts) + " "
    return prefix


def _field(name: str, value: float | bool) -> str:
    key = _keys.get(name)
    if key is None:
        key = _keys[name] = name.translate(_ESCAPE_KEY)
    if value is True:
        return key + "=true"
    if value is False:
        return key + "=false"
    # Catalog floats are floats already (the decoder converts), so a field is never
    # written as an integer (`1i`) and keeps one type for ever; a whole number loses
    # its ".0", as Point writes it.
    text = repr(value)
    return f"{key}={text[:-2] if text.endswith('.0') else text}"


def _line(prefix: str, values: dict, r: ReadingBase) -> str:
    """The record's fields (sorted by name) at its time, marked `time_estimated` when the
    node did not measure that time itself (a point whose time it measured is written as
    it always was)."""
    if r.time_estimated:
        values[TIME_ESTIMATED] = True
    fields = ",".join([_field(name, values[name]) for name in sorted(values)])
    return f"{prefix}{fields} {r.ts}" if fields else ""


def reading_line(r: ReadingBase) -> str:
    """Raw reading: measurement = kind, the fields the node sent, the reading's own time."""
    prefix = _prefix(r.kind, ("district", r.district), ("zone", r.zone), ("node", r.node))
    return _line(prefix, r.fields.values(), r)


def event_line(e: EventBase) -> str:
    prefix = _prefix(
        EVENTS,
        ("district", e.district),
        ("zone", e.zone),
        ("node", e.node),
        ("kind", e.kind),
        ("event", e.event),  # type: ignore[attr-defined]
        ("severity", e.severity),
    )
    values: dict[str, float | bool] = {"state": e.state}
    if e.value is not None:
        values["value"] = float(e.value)
    return _line(prefix, values, e)


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
