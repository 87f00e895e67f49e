"""A known small city, written into a real InfluxDB in the layout of edge/SCHEMA.md.

Everything happens in the three hours before the last full hour (T0 .. T0+3h), so the
hourly buckets of the answers are exact. The stimuli below are the single source of the
expected answers: tests compute what each question must answer from these tables.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

from influxdb_client import Point, WritePrecision

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
HOURS = 3
DISTRICT = "xuhui"
OTHER_DISTRICT = "pudong"
PARKING_EVERY_MIN = 10
AIR_EVERY_MIN = 5
HEALTH_EVERY_MIN = 30

# Parking spaces: node -> (zone, state changes as (minute, occupied)). The first entry is the
# state at T0; every later change to occupied is an arrival and sends an `occupancy` event.
# Telemetry every 10 minutes carries the state; p-0004's last change (minute 175) comes after
# its last telemetry (minute 170), so only its event tells that it is free now.
PARKING = {
    "p-0001": ("caohejing", [(0, False), (20, True), (100, False), (130, True)]),
    "p-0002": ("caohejing", [(0, True), (50, False)]),
    "p-0003": ("caohejing", [(0, False), (10, True), (40, False), (70, True)]),
    "p-0004": ("caohejing", [(0, False), (60, True), (175, False)]),
    "p-0101": ("xujiahui", [(0, True)]),
    "p-0102": ("xujiahui", [(0, False), (150, True)]),
}

# Air nodes: node -> (zone, PM2.5 mean per hour, PM10 mean per hour). Readings every 5
# minutes swing 5 ug/m3 above and below the hour's mean, so each hourly mean is exact.
AIR = {
    "a-0001": ("caohejing", [30.0, 80.0, 160.0], [50.0, 120.0, 300.0]),
    "a-0002": ("caohejing", [40.0, 100.0, 200.0], [50.0, 180.0, 400.0]),
    "a-0101": ("xujiahui", [10.0, 20.0, 30.0], [20.0, 40.0, 60.0]),
}
AIR_SWING = 5.0


@dataclass(frozen=True)
class Alarm:
    district: str
    zone: str
    node: str
    kind: str
    event: str
    severity: str
    changes: tuple[tuple[int, bool, float | None], ...]  # (minute from T0, state, value)


ALARMS = [
    Alarm(DISTRICT, "caohejing", "l-0001", "leak", "leak", "critical", ((30, True, 2500.0),)),
    Alarm(
        DISTRICT, "xujiahui", "l-0002", "leak", "leak", "critical", ((40, True, 2200.0), (80, False, 150.0))
    ),
    Alarm(
        DISTRICT,
        "caohejing",
        "m-0001",
        "manhole",
        "cover-open",
        "critical",
        ((60, True, 37.5), (90, False, 2.0)),
    ),
    Alarm(DISTRICT, "caohejing", "m-0001", "manhole", "tilt", "warning", ((100, True, 22.0),)),
    Alarm(DISTRICT, "caohejing", "a-0002", "air", "pm25", "warning", ((125, True, 205.0),)),
    Alarm(DISTRICT, "xujiahui", "p-0101", "parking", "battery-low", "warning", ((150, True, 3.25),)),
    # Raised two hours before T0 and never cleared: open, but outside a window that starts at T0.
    Alarm(DISTRICT, "xujiahui", "m-0002", "manhole", "h2s", "critical", ((-120, True, 14.0),)),
    Alarm(OTHER_DISTRICT, "lujiazui", "l-0201", "leak", "leak", "critical", ((45, True, 3000.0),)),
]

# Node health, written every 30 minutes from T0 (and once an hour before T0). Defaults:
# online, 3.6 V, -70 dBm, no gaps. Overrides: node -> list of (from minute, fields).
HEALTH_NODES = {
    **{node: ("parking", zone) for node, (zone, _) in PARKING.items()},
    **{node: ("air", zone) for node, (zone, *_) in AIR.items()},
    "l-0001": ("leak", "caohejing"),
    "l-0002": ("leak", "xujiahui"),
    "m-0001": ("manhole", "caohejing"),
    "m-0002": ("manhole", "xujiahui"),
}
HEALTH_CHANGES = {
    "p-0002": [(160, {"online": False})],  # went offline at minute 160
    "l-0001": [(-60, {"battery_v": 3.4}), (90, {"battery_v": 3.1})],  # low battery
    "p-0101": [(-60, {"battery_v": 3.25})],  # low battery all along
    "p-0003": [(-60, {"seq_gaps": 4.0}), (60, {"seq_gaps": 6.0}), (120, {"seq_gaps": 9.0})],
    "a-0101": [(-60, {"seq_gaps": 7.0})],  # old gaps only, none in the window
    # 8 readings missing before the window arrive late (replayed: the count falls to 0),
    # then 2 new ones go missing.
    "m-0002": [(-60, {"seq_gaps": 8.0}), (30, {"seq_gaps": 0.0}), (90, {"seq_gaps": 2.0})],
    # One reading arrives out of order: missing for a while, then filled. Nothing is lost.
    "l-0002": [(30, {"seq_gaps": 1.0}), (60, {"seq_gaps": 0.0})],
}
HEALTH_DEFAULTS = {"online": True, "battery_v": 3.6, "rssi": -70.0, "seq_gaps": 0.0}


def last_full_hour_ms(now_ms: int | None = None) -> int:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return now_ms - now_ms % HOUR_MS


@dataclass(frozen=True)
class City:
    t0_ms: int

    @property
    def end_ms(self) -> int:
        return self.t0_ms + HOURS * HOUR_MS

    def at(self, minute: float) -> int:
        return int(self.t0_ms + minute * MINUTE_MS)

    def since(self) -> str:
        return _iso(self.t0_ms)

    def until(self) -> str:
        return _iso(self.end_ms)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


# -- what the stimuli mean (used by the tests for the expected answers) -----------------------


def occupied_at(node: str, minute: float) -> bool:
    state = False
    for start, occupied in PARKING[node][1]:
        if start <= minute:
            state = occupied
    return state


def parking_reading_minutes() -> range:
    return range(0, HOURS * 60, PARKING_EVERY_MIN)


def arrivals(node: str) -> list[int]:
    return [minute for minute, occupied in PARKING[node][1][1:] if occupied]


def air_readings(node: str) -> list[tuple[int, float, float]]:
    """(minute, pm25, pm10) of every reading of an air node."""
    _zone, pm25, pm10 = AIR[node]
    out = []
    for i, minute in enumerate(range(0, HOURS * 60, AIR_EVERY_MIN)):
        swing = AIR_SWING if i % 2 == 0 else -AIR_SWING
        hour = minute // 60
        out.append((minute, pm25[hour] + swing, pm10[hour] + swing))
    return out


def health_at(node: str, minute: int) -> dict:
    fields = dict(HEALTH_DEFAULTS)
    for start, change in HEALTH_CHANGES.get(node, []):
        if start <= minute:
            fields.update(change)
    return fields


def health_minutes() -> list[int]:
    return [-60, *range(0, HOURS * 60, HEALTH_EVERY_MIN), 160]


# -- writing it ------------------------------------------------------------------------------


def district_points(city: City) -> list[Point]:
    """Raw readings, events and node health of the district database."""
    points = []
    for node, (zone, _changes) in PARKING.items():
        for minute in parking_reading_minutes():
            points.append(
                _tags(Point("parking"), zone, node)
                .field("occupied", occupied_at(node, minute))
                .field("battery_v", 3.6)
                .time(city.at(minute), WritePrecision.MS)
            )
    for node, (zone, *_rest) in AIR.items():
        for minute, pm25, pm10 in air_readings(node):
            points.append(
                _tags(Point("air"), zone, node)
                .field("pm25", float(pm25))
                .field("pm10", float(pm10))
                .time(city.at(minute), WritePrecision.MS)
            )
    return points + shared_points(city, DISTRICT)


def shared_points(city: City, district: str) -> list[Point]:
    """Events and node health, which both the district and the city databases hold."""
    points = []
    for node, (zone, _changes) in PARKING.items() if district == DISTRICT else ():
        for minute, occupied in PARKING[node][1][1:]:
            points.append(
                _event(
                    city, district, zone, node, "parking", "occupancy", "info", minute + 0.1, occupied, None
                )
            )
    for alarm in ALARMS:
        if alarm.district != district:
            continue
        for minute, state, value in alarm.changes:
            points.append(
                _event(
                    city,
                    district,
                    alarm.zone,
                    alarm.node,
                    alarm.kind,
                    alarm.event,
                    alarm.severity,
                    minute,
                    state,
                    value,
                )
            )
    if district == DISTRICT:
        for node, (kind, zone) in HEALTH_NODES.items():
            for minute in health_minutes():
                fields = health_at(node, minute)
                p = _tags(Point("node_health"), zone, node, district).tag("kind", kind)
                for name, value in fields.items():
                    p = p.field(name, value)
                p = p.field("last_seen", float(city.at(min(minute, 150) if node == "p-0002" else minute)))
                p = p.field("fw", "1.0.0")
                points.append(p.time(city.at(minute), WritePrecision.MS))
    return points


def rollup_points(city: City) -> list[Point]:
    """The city database: one-minute rollups of the same readings, events and node health."""
    points = []
    for node, (zone, _changes) in PARKING.items():
        for minute in parking_reading_minutes():
            occupied = occupied_at(node, minute)
            points.append(
                _tags(Point("parking_1m"), zone, node)
                .field("occupied_frac", 1.0 if occupied else 0.0)
                .field("occupied_last", occupied)
                .field("occupied_count", 1.0)
                .time(city.at(minute), WritePrecision.MS)
            )
    for node, (zone, *_rest) in AIR.items():
        for minute, pm25, pm10 in air_readings(node):
            p = _tags(Point("air_1m"), zone, node)
            for name, value in (("pm25", pm25), ("pm10", pm10)):
                for stat in ("mean", "min", "max"):
                    p = p.field(f"{name}_{stat}", float(value))
                p = p.field(f"{name}_count", 1.0)
            points.append(p.time(city.at(minute), WritePrecision.MS))
    return points + shared_points(city, DISTRICT) + shared_points(city, OTHER_DISTRICT)


def _tags(point: Point, zone: str, node: str, district: str = DISTRICT) -> Point:
    return point.tag("district", district).tag("zone", zone).tag("node", node)


def _event(
    city: City,
    district: str,
    zone: str,
    node: str,
    kind: str,
    event: str,
    severity: str,
    minute: float,
    state: bool,
    value: float | None,
) -> Point:
    p = (
        _tags(Point("events"), zone, node, district)
        .tag("kind", kind)
        .tag("event", event)
        .tag("severity", severity)
        .field("state", state)
    )
    if value is not None:
        p = p.field("value", float(value))
    return p.time(city.at(minute), WritePrecision.MS)


def write(url: str, db: str, points: list[Point]) -> None:
    """Line protocol of influxdb-client's Point, sent to the v1 /write endpoint as the edge's
    v1 sink does."""
    body = "\n".join(p.to_line_protocol() for p in points).encode()
    query = urllib.parse.urlencode({"db": db, "precision": "ms"})
    request = urllib.request.Request(f"{url}/write?{query}", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 204, resp.status


def populate(url: str, t0_ms: int, create) -> City:
    """Write the whole known city; `create(db)` makes a database."""
    city = City(t0_ms)
    for db, points in (
        (f"district_{DISTRICT}", district_points(city)),
        (f"district_{OTHER_DISTRICT}", shared_points(city, OTHER_DISTRICT)),
        ("city", rollup_points(city)),
    ):
        create(db)
        write(url, db, points)
    return city
