"""Line protocol for every measurement of edge/SCHEMA.md. This module is the one place
that knows the schema: measurement names, tags, field names and their fixed types. Lines
are built once, at ingest, and stored in the buffer, so forwarding is plain concatenation
and a replay writes byte-identical points.

Every line is formatted here from a cached prefix per series (measurement and escaped
tags, sorted by key) and its fields, sorted by name: building an influxdb-client `Point`
per reading was a sixth of the edge's CPU per reading, and importing influxdb-client (its
whole generated API) half a second of every edge's start. The output is byte for byte
what `Point.to_line_protocol` gives for the same record, health line or rollup
(tests/edge/test_line_protocol.py holds it to that).
"""

from __future__ import annotations

import math

from edge.models import EventBase, ReadingBase
from protocols import catalog
from protocols.names import EVENTS, NODE_HEALTH, rollup_measurement

TIME_ESTIMATED = "time_estimated"  # bool field of readings and events: the edge estimated the time

# The line protocol's escapes (docs.influxdata.com, "Line protocol", special characters),
# as influxdb-client's Point applies them: in a measurement name, commas and spaces; in a
# tag key, tag value or field key, equals signs too; in both, the control characters
# newline, tab and carriage return written as backslash escapes; in a string field value,
# double quotes and backslashes.
_CONTROL = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_ESCAPE_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", **_CONTROL})
_ESCAPE_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", **_CONTROL})
_ESCAPE_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


# -- series prefixes and fields ----------------------------------------------------------
PREFIXES_MAX = 100_000  # series prefixes kept (a zone's nodes have a few each)
_prefixes: dict[tuple, str] = {}
_keys: dict[str, str] = {}  # field name -> escaped


def _tag_value(value: str) -> str:
    out = value.translate(_ESCAPE_KEY)
    return out + " " if out.endswith("\\") else out  # as Point: no escaped space at the end


def _prefix(measurement: str, *tags: tuple[str, str]) -> str:
    """`measurement,tag=value,... ` with the tags sorted by key, made once per series."""
    key = (measurement, *tags)  # (a tuple of the pairs: no generator per line)
    prefix = _prefixes.get(key)
    if prefix is None:
        parts = [measurement.translate(_ESCAPE_MEASUREMENT)]
        parts += [f"{k.translate(_ESCAPE_KEY)}={_tag_value(v)}" for k, v in sorted(tags) if v != ""]
        if len(_prefixes) >= PREFIXES_MAX:
            _prefixes.clear()
        prefix = _prefixes[key] = ",".join(parts) + " "
    return prefix


def _field(name: str, value: float | bool | str) -> str:
    key = _keys.get(name)
    if key is None:
        key = _keys[name] = name.translate(_ESCAPE_KEY)
    if type(value) is float:  # nearly every field: a catalog number
        text = repr(value)
        return f"{key}={text[:-2] if text.endswith('.0') else text}"
    if value is True:
        return key + "=true"
    if value is False:
        return key + "=false"
    if isinstance(value, str):
        return f'{key}="{value.translate(_ESCAPE_STRING)}"'
    # Catalog floats are floats already (the decoder converts), so a field is never
    # written as an integer (`1i`) and keeps one type for ever; a whole number loses
    # its ".0", as Point writes it.
    text = repr(value)
    return f"{key}={text[:-2] if text.endswith('.0') else text}"


def _fields_line(prefix: str, values: dict[str, float | bool | str | None], ts: int) -> str | None:
    """The prefix, the fields sorted by name (those None or not finite left out, as Point
    leaves them out) and the time; None when no field is left."""
    fields = [
        _field(name, value)
        for name, value in sorted(values.items())
        if value is not None and not (isinstance(value, float) and not math.isfinite(value))
    ]
    return f"{prefix}{','.join(fields)} {int(ts)}" if fields else None


def _line(prefix: str, values: dict, ts: int, estimated: bool) -> str:
    """The fields (sorted by name) at their time, marked `time_estimated` when the node did
    not measure that time itself (a point whose time it measured is written as it always
    was)."""
    if estimated:
        values = {**values, TIME_ESTIMATED: True}
    fields = ",".join([_field(name, values[name]) for name in sorted(values)])
    return f"{prefix}{fields} {ts}" if fields else ""


def raw_line(district: str, zone: str, node: str, kind: str, fields: dict, ts: int, estimated: bool) -> str:
    """Raw reading: measurement = kind, the fields the node sent, the reading's own time.
    From a record (reading_line), or straight from a decoded message's reading in the
    receiving process (edge.receiver)."""
    prefix = _prefix(kind, ("district", district), ("zone", zone), ("node", node))
    return _line(prefix, fields, ts, estimated)


def reading_line(r: ReadingBase) -> str:
    return raw_line(r.district, r.zone, r.node, r.kind, r.fields.values(), r.ts, r.time_estimated)


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
    return _line(prefix, values, e.ts, e.time_estimated)


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
    prefix = _prefix(NODE_HEALTH, ("district", district), ("zone", zone), ("node", node), ("kind", kind))
    numbers = {
        "battery_v": battery_v,
        "rssi": rssi,
        "last_seen": last_seen,
        "seq_gaps": seq_gaps,
        "clock_offset_ms": clock_offset_ms,
        "dropped": dropped,
        "ts_collisions": ts_collisions,
        "estimated_times": estimated_times,
    }
    values: dict[str, float | bool | str | None] = {
        name: None if value is None else float(value) for name, value in numbers.items()
    }
    values.update(online=online, fw=fw, clock_bad=clock_bad)
    return _fields_line(prefix, values, now_ms)


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
    tags = [("district", district), ("zone", zone), ("node", node)]
    if worker:
        tags.append(("worker", worker))
    values: dict[str, float | bool | str | None] = {}
    for name, a in agg.items():
        if name not in spec:
            continue
        if spec[name][0] == catalog.BOOL:
            values[f"{name}_frac"] = float(a[0]) / a[1]
            values[f"{name}_last"] = bool(a[2])
            values[f"{name}_count"] = float(a[1])
        else:
            values[f"{name}_mean"] = float(a[0]) / a[3]
            values[f"{name}_min"] = float(a[1])
            values[f"{name}_max"] = float(a[2])
            values[f"{name}_count"] = float(a[3])
    return _fields_line(_prefix(rollup_measurement(kind), *tags), values, minute_ms)
