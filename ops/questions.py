"""The daily questions of city operations, as InfluxQL on the schema of edge/SCHEMA.md.

Every question reads one database: a district database (raw readings, `district_{name}`)
or the city database (one-minute rollups). Events and node health are in both, so the
alarm and node questions read the same measurements at either level; parking and air read
`parking`/`air` at district level and `parking_1m`/`air_1m` at city level (the `Layer`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from ops.answer import Answer, Section, rounded
from ops.aqi import air_index
from ops.client import InfluxQLClient, Series
from ops.scope import Place, Window, check_database, check_place, iso
from protocols.names import EVENTS, NODE_HEALTH, rollup_measurement
from protocols.thresholds import THRESHOLDS

# Events that report a state, not an alarm: `occupancy` is a parking space filling up.
NON_ALARM_EVENTS = ("occupancy",)
DEFAULT_BATTERY_LOW_V = 3.3


@dataclass(frozen=True)
class Layer:
    """Where the parking and air answers come from at one platform level."""

    name: str
    parking: str  # measurement
    air: str
    occupied_state: str  # field holding a space's occupied state (bool)
    occupancy_share: str | None  # field already holding the share of occupied readings, or None
    pm25: str
    pm10: str
    pm25_max: str


RAW = Layer("raw", "parking", "air", "occupied", None, "pm25", "pm10", "pm25")
ROLLUP = Layer(
    "rollup",
    rollup_measurement("parking"),
    rollup_measurement("air"),
    "occupied_last",
    "occupied_frac",
    "pm25_mean",
    "pm10_mean",
    "pm25_max",
)
LAYERS = {"raw": RAW, "rollup": ROLLUP}


def layer_for(db: str, choice: str = "auto") -> Layer:
    """The city database holds rollups; any other (a district database) raw readings."""
    if choice != "auto":
        return LAYERS[choice]
    return ROLLUP if db == "city" else RAW


@dataclass(frozen=True)
class Question:
    """What every question needs: where to ask, which database, which window and place."""

    client: InfluxQLClient
    db: str
    window: Window
    place: Place
    layer: Layer = RAW

    def check(self) -> None:
        """ScopeError if the database, a district or a zone asked about does not exist: a
        misspelt name would otherwise give an empty answer, as if all were well."""
        check_database(self.client, self.db)
        check_place(self.client, self.db, self.place)

    def ask(self, *statements: str) -> list[list[Series]]:
        results = self.client.query(";\n".join(statements), db=self.db)
        # InfluxDB returns one result per statement; a missing one means no series.
        return results + [[] for _ in range(len(statements) - len(results))]

    def where(self, extra: str = "") -> str:
        clause = self.window.where() + self.place.where()
        return f"WHERE {extra + ' AND ' if extra else ''}{clause}"


def _by(series_list: list[Series], *tags: str) -> dict[tuple[str, ...], dict[str, Any]]:
    """The single row of each series (aggregates without GROUP BY time), keyed by tags."""
    out = {}
    for series in series_list:
        for record in series.records():
            out[tuple(series.tags.get(t, "") for t in tags)] = record
    return out


# -- parking -----------------------------------------------------------------------------


def parking(q: Question) -> Answer:
    """Free and occupied spaces now per zone; occupancy rate and turnover per hour."""
    layer = q.layer
    place_tags = '"district", "zone"'
    node_tags = '"district", "zone", "node"'
    occ_event = "\"event\" = 'occupancy'"
    arrival = occ_event + ' AND "state" = true'
    statements = [
        f'SELECT last("{layer.occupied_state}") AS occupied FROM "{layer.parking}" {q.where()} GROUP BY {node_tags}',
        f'SELECT last("state") AS occupied FROM "{EVENTS}" {q.where(occ_event)} GROUP BY {node_tags}',
        f'SELECT count("state") AS arrivals FROM "{EVENTS}" {q.where(arrival)} '
        f"GROUP BY time(1h), {place_tags} fill(none)",
        # When each zone's first reading and first occupancy event in the window came: the
        # hours it was observed run from there to its last (the states now, above).
        f'SELECT first("{layer.occupied_state}") FROM "{layer.parking}" {q.where()} GROUP BY {place_tags}',
        f'SELECT first("state") FROM "{EVENTS}" {q.where(occ_event)} GROUP BY {place_tags}',
    ]
    statements += _occupancy_share_statements(q, f"GROUP BY time(1h), {place_tags} fill(none)")
    now_telemetry, now_events, arrivals, first_telemetry, first_events, *share = q.ask(*statements)

    # A space's state now is the newest of its last reading and its last occupancy event
    # (events arrive at once; telemetry only every reporting interval).
    state: dict[tuple[str, ...], tuple[int, bool]] = {}
    for source in (now_telemetry, now_events):
        for key, rec in _by(source, "district", "zone", "node").items():
            if key not in state or rec["time"] > state[key][0]:
                state[key] = (rec["time"], bool(rec["occupied"]))
    zones: dict[tuple[str, str], dict[str, Any]] = {}
    for (district, zone, _node), (_t, occupied) in sorted(state.items()):
        z = zones.setdefault(
            (district, zone), {"district": district, "zone": zone, "spaces": 0, "occupied": 0, "free": 0}
        )
        z["spaces"] += 1
        z["occupied" if occupied else "free"] += 1
    observed = _observed_hours(state, first_telemetry, first_events)

    hourly_share = _occupancy_share_rows(q, share)
    hourly_arrivals = {
        (s.tags.get("district", ""), s.tags.get("zone", ""), r["time"]): r["arrivals"]
        for s in arrivals
        for r in s.records()
    }
    hourly_rows = []
    for key in sorted(set(hourly_share) | set(hourly_arrivals), key=lambda k: (k[2], k[0], k[1])):
        district, zone, hour = key
        spaces = zones.get((district, zone), {}).get("spaces") or None
        n_arrivals = int(hourly_arrivals.get(key, 0))
        pct = hourly_share.get(key)
        hourly_rows.append(
            {
                "hour": iso(hour),
                "district": district,
                "zone": zone,
                "occupancy_pct": rounded(None if pct is None else pct * 100, 1),
                "arrivals": n_arrivals,
                "turnover": rounded(n_arrivals / spaces if spaces else None),
            }
        )

    totals = defaultdict(int)
    for row in hourly_rows:
        totals[(row["district"], row["zone"])] += row["arrivals"]
    zone_rows = []
    for key, z in sorted(zones.items()):
        n_arrivals = totals.get(key, 0)
        hours = observed.get(key)
        zone_rows.append(
            {
                **z,
                "occupancy_pct": rounded(100 * z["occupied"] / z["spaces"], 1),
                "arrivals": n_arrivals,
                "observed_h": rounded(hours, 2),
                "turnover_per_hour": rounded(n_arrivals / z["spaces"] / hours, 3) if hours else None,
            }
        )
    return [
        Section(
            "zones",
            "Parking now per zone (turnover: arrivals per space per hour observed)",
            [
                "district",
                "zone",
                "spaces",
                "occupied",
                "free",
                "occupancy_pct",
                "arrivals",
                "observed_h",
                "turnover_per_hour",
            ],
            zone_rows,
        ),
        Section(
            "hourly",
            "Parking per hour (occupancy: share of readings occupied; turnover: arrivals per space)",
            ["hour", "district", "zone", "occupancy_pct", "arrivals", "turnover"],
            hourly_rows,
        ),
    ]


def _observed_hours(
    state: dict[tuple[str, ...], tuple[int, bool]], *firsts: list[Series]
) -> dict[tuple[str, str], float]:
    """Hours each zone was observed in the window: from its first reading or occupancy event
    to its last. A turnover per hour of the window would fall as the window grows past the
    data (a city that reported for an hour, asked over a day); per hour observed it does not."""
    last: dict[tuple[str, str], int] = {}
    for (district, zone, _node), (t, _occupied) in state.items():
        last[(district, zone)] = max(t, last.get((district, zone), t))
    first: dict[tuple[str, str], int] = {}
    for series_list in firsts:
        for (district, zone), rec in _by(series_list, "district", "zone").items():
            first[(district, zone)] = min(rec["time"], first.get((district, zone), rec["time"]))
    return {key: (last[key] - first[key]) / 3_600_000 for key in last if key in first}


def _occupancy_share_statements(q: Question, group_by: str) -> list[str]:
    layer = q.layer
    if layer.occupancy_share:
        return [
            f'SELECT mean("{layer.occupancy_share}") AS share FROM "{layer.parking}" {q.where()} {group_by}'
        ]
    # Raw readings: InfluxQL has no mean() of a bool, so count occupied readings and all readings.
    occupied = f'"{layer.occupied_state}" = true'
    return [
        f'SELECT count("{layer.occupied_state}") AS n FROM "{layer.parking}" {q.where(occupied)} {group_by}',
        f'SELECT count("{layer.occupied_state}") AS n FROM "{layer.parking}" {q.where()} {group_by}',
    ]


def _occupancy_share_rows(q: Question, results: list[list[Series]]) -> dict[tuple[str, str, int], float]:
    """(district, zone, bucket time) -> share of occupied (0..1)."""

    def rows(series_list: list[Series], column: str) -> dict[tuple[str, str, int], float]:
        return {
            (s.tags.get("district", ""), s.tags.get("zone", ""), r["time"]): r[column]
            for s in series_list
            for r in s.records()
            if r[column] is not None
        }

    if q.layer.occupancy_share:
        return rows(results[0], "share")
    occupied, total = rows(results[0], "n"), rows(results[1], "n")
    return {k: occupied.get(k, 0) / n for k, n in total.items() if n}


def occupancy_series(q: Question, interval: str = "1h") -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Share of occupied spaces per zone over time, for charts."""
    statements = _occupancy_share_statements(q, f'GROUP BY time({interval}), "district", "zone" fill(none)')
    shares = _occupancy_share_rows(q, q.ask(*statements))
    out: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for (district, zone, t), share in sorted(shares.items(), key=lambda kv: kv[0][2]):
        out[(district, zone)].append((t, share))
    return dict(out)


# -- air ----------------------------------------------------------------------------------


def air(q: Question, worst: int = 5) -> Answer:
    """Hourly PM2.5 / PM10 per zone with the AQI category, and the worst nodes."""
    layer = q.layer
    hourly, nodes = q.ask(
        f'SELECT mean("{layer.pm25}") AS pm25, mean("{layer.pm10}") AS pm10 FROM "{layer.air}" {q.where()} '
        'GROUP BY time(1h), "district", "zone" fill(none)',
        f'SELECT mean("{layer.pm25}") AS pm25, max("{layer.pm25_max}") AS pm25_max, mean("{layer.pm10}") AS pm10 '
        f'FROM "{layer.air}" {q.where()} GROUP BY "district", "zone", "node"',
    )
    hourly_rows = []
    for series in hourly:
        for rec in series.records():
            hourly_rows.append(
                {
                    "hour": iso(rec["time"]),
                    "district": rec.get("district", ""),
                    "zone": rec.get("zone", ""),
                    **_with_index(rec),
                }
            )
    hourly_rows.sort(key=lambda r: (r["hour"], r["district"], r["zone"]))
    node_rows = []
    for (district, zone, node), rec in _by(nodes, "district", "zone", "node").items():
        node_rows.append(
            {
                "node": node,
                "district": district,
                "zone": zone,
                **_with_index(rec),
                "pm25_max": rounded(rec["pm25_max"], 1),
            }
        )
    node_rows.sort(key=lambda r: (-(r["pm25"] if r["pm25"] is not None else -1), r["node"]))
    return [
        Section(
            "hourly",
            "PM2.5 / PM10 per zone and hour (ug/m3) with the AQI of HJ 633-2012",
            [
                "hour",
                "district",
                "zone",
                "pm25",
                "pm10",
                "iaqi_pm25",
                "iaqi_pm10",
                "aqi",
                "category",
                "primary",
            ],
            hourly_rows,
            ["hour", "zone", "pm25", "pm10", "iaqi_pm25", "iaqi_pm10", "aqi", "category", "primary"],
        ),
        Section(
            "worst_nodes",
            f"Worst {worst} nodes by mean PM2.5 over the window",
            ["node", "district", "zone", "pm25", "pm25_max", "pm10", "aqi", "category"],
            node_rows[:worst],
        ),
    ]


def _with_index(rec: dict[str, Any]) -> dict[str, Any]:
    pm25, pm10 = rec.get("pm25"), rec.get("pm10")
    index = air_index({"pm25": pm25, "pm10": pm10})
    return {
        "pm25": rounded(pm25, 1),
        "pm10": rounded(pm10, 1),
        "iaqi_pm25": index.iaqi.get("pm25") if index else None,
        "iaqi_pm10": index.iaqi.get("pm10") if index else None,
        "aqi": index.aqi if index else None,
        "category": index.category.name if index else None,
        "primary": index.primary if index else None,
    }


def pm25_series(q: Question, interval: str = "1h") -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Mean PM2.5 per zone over time, for charts."""
    (series,) = q.ask(
        f'SELECT mean("{q.layer.pm25}") AS pm25 FROM "{q.layer.air}" {q.where()} '
        f'GROUP BY time({interval}), "district", "zone" fill(none)'
    )
    return {
        (s.tags.get("district", ""), s.tags.get("zone", "")): [
            (r["time"], r["pm25"]) for r in s.records() if r["pm25"] is not None
        ]
        for s in series
    }


# -- alarms -------------------------------------------------------------------------------


def _alarm_filter() -> str:
    return " AND ".join(f"\"event\" != '{e}'" for e in NON_ALARM_EVENTS)


def alarms(q: Question) -> Answer:
    """Alarms still open: the newest point of the (node, event) series has state true."""
    (series,) = q.ask(
        f'SELECT last("state") AS state, "value", "kind", "severity" FROM "{EVENTS}" '
        f'{q.where(_alarm_filter())} GROUP BY "district", "zone", "node", "event"'
    )
    rows = []
    for (district, zone, node, event), rec in _by(series, "district", "zone", "node", "event").items():
        if rec["state"] is not True:
            continue
        age_s = (q.window.end_ms - rec["time"]) // 1000
        rows.append(
            {
                "node": node,
                "district": district,
                "zone": zone,
                "kind": rec.get("kind"),
                "event": event,
                "severity": rec.get("severity"),
                "value": rec.get("value"),
                "raised_at": iso(rec["time"]),
                "age_s": age_s,
                "age": human_age(age_s),
            }
        )
    severity_rank = {"critical": 0, "warning": 1, "info": 2}
    rows.sort(key=lambda r: (severity_rank.get(r["severity"], 3), -r["age_s"], r["node"], r["event"]))
    return [
        Section(
            "open",
            "Open alarms (raised and not cleared)",
            ["node", "district", "zone", "kind", "event", "severity", "value", "raised_at", "age"],
            rows,
            ["node", "zone", "event", "severity", "value", "raised_at", "age"],
        )
    ]


def alarm_history(q: Question) -> dict[tuple[str, str, str, str], list[tuple[int, bool]]]:
    """State changes of every alarm series in the window, led by its state at the window's
    start (when known), for the alarm timeline. Key: (district, zone, node, event)."""
    before, during = q.ask(
        f'SELECT last("state") AS state FROM "{EVENTS}" WHERE {_alarm_filter()} AND time < {q.window.start_ms}ms'
        f'{q.place.where()} GROUP BY "district", "zone", "node", "event"',
        f'SELECT "state" FROM "{EVENTS}" {q.where(_alarm_filter())} GROUP BY "district", "zone", "node", "event"',
    )
    tags = ("district", "zone", "node", "event")
    history: dict[tuple[str, ...], list[tuple[int, bool]]] = defaultdict(list)
    for key, rec in _by(before, *tags).items():
        if rec["state"] is True:
            history[key].append((q.window.start_ms, True))
    for series in during:
        key = tuple(series.tags.get(t, "") for t in tags)
        history[key].extend((r["time"], bool(r["state"])) for r in series.records())
    return {k: v for k, v in sorted(history.items())}


def human_age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


# -- nodes --------------------------------------------------------------------------------


def battery_low_v(kind: str | None) -> float:
    return THRESHOLDS.get(kind or "", {}).get("battery_low_v", DEFAULT_BATTERY_LOW_V)


def nodes(q: Question, everyone: bool = False) -> Answer:
    """Offline nodes, low batteries and readings lost on the way (seq gaps), by zone."""
    tags = '"district", "zone", "node", "kind"'
    latest, before, rises = q.ask(
        'SELECT last("online") AS online, last("battery_v") AS battery_v, last("rssi") AS rssi, '
        'last("last_seen") AS last_seen, last("seq_gaps") AS seq_gaps, first("seq_gaps") AS first_gaps '
        f'FROM "{NODE_HEALTH}" {q.where()} GROUP BY {tags}',
        f'SELECT last("seq_gaps") AS seq_gaps FROM "{NODE_HEALTH}" WHERE time < {q.window.start_ms}ms'
        f"{q.place.where()} GROUP BY {tags}",
        'SELECT sum("rise") AS rise FROM (SELECT non_negative_difference("seq_gaps") AS "rise" '
        f'FROM "{NODE_HEALTH}" {q.where()} GROUP BY {tags}) GROUP BY {tags}',
    )
    node_tags = ("district", "zone", "node", "kind")
    gaps_before = {k: r["seq_gaps"] or 0 for k, r in _by(before, *node_tags).items()}
    gaps_rises = {k: r["rise"] or 0 for k, r in _by(rises, *node_tags).items()}
    node_rows, zones = [], {}
    for key, rec in sorted(_by(latest, *node_tags).items()):
        district, zone, node, kind = key
        # The edge's seq_gaps counts the readings missing now: it rises when a seq is skipped
        # and falls when a late (replayed) reading fills the hole. Lost in the window = the
        # rises in the window (from the last value before it, or 0 for a node first seen in
        # it), but no more than are still missing.
        gaps_total = int(rec["seq_gaps"] or 0)
        first_rise = max(0, int(rec["first_gaps"] or 0) - int(gaps_before.get(key, 0)))
        gaps_window = min(gaps_total, first_rise + int(gaps_rises.get(key, 0)))
        problems = []
        if rec["online"] is False:
            problems.append("offline")
        if rec["battery_v"] is not None and rec["battery_v"] < battery_low_v(kind):
            problems.append("low battery")
        if gaps_window > 0:
            problems.append("seq gaps")
        z = zones.setdefault(
            (district, zone),
            {
                "district": district,
                "zone": zone,
                "nodes": 0,
                "online": 0,
                "offline": 0,
                "low_battery": 0,
                "with_gaps": 0,
                "readings_lost": 0,
            },
        )
        z["nodes"] += 1
        z["offline" if rec["online"] is False else "online"] += 1
        z["low_battery"] += "low battery" in problems
        z["with_gaps"] += "seq gaps" in problems
        z["readings_lost"] += gaps_window
        if problems or everyone:
            last_seen = rec["last_seen"]
            node_rows.append(
                {
                    "node": node,
                    "district": district,
                    "zone": zone,
                    "kind": kind,
                    "online": rec["online"],
                    "battery_v": rounded(rec["battery_v"]),
                    "rssi": rec["rssi"],
                    "last_seen": iso(last_seen),
                    "silent_for": human_age(int((q.window.end_ms - last_seen) // 1000))
                    if last_seen
                    else None,
                    "seq_gaps": gaps_window,
                    "seq_gaps_total": gaps_total,
                    "problems": ", ".join(problems),
                }
            )
    return [
        Section(
            "zones",
            "Node health per zone",
            ["district", "zone", "nodes", "online", "offline", "low_battery", "with_gaps", "readings_lost"],
            list(zones.values()),
        ),
        Section(
            "nodes",
            "Nodes that need attention" if not everyone else "Nodes",
            [
                "node",
                "district",
                "zone",
                "kind",
                "online",
                "battery_v",
                "rssi",
                "last_seen",
                "silent_for",
                "seq_gaps",
                "seq_gaps_total",
                "problems",
            ],
            node_rows,
            ["node", "zone", "kind", "online", "battery_v", "silent_for", "seq_gaps", "problems"],
        ),
    ]


# -- any query ----------------------------------------------------------------------------


def influxql(client: InfluxQLClient, db: str | None, statement: str) -> Answer:
    """Any InfluxQL; every series of every statement becomes rows with its tags as columns."""
    sections = []
    for i, result in enumerate(client.query(statement, db=db)):
        columns: list[str] = []
        rows: list[dict[str, Any]] = []
        for series in result:
            time_first = ["time"] if "time" in series.columns else []
            for col in ["name", *time_first, *series.tags, *series.columns]:
                if col not in columns:
                    columns.append(col)
            for rec in series.records():
                if "time" in rec and isinstance(rec["time"], (int, float)):
                    rec["time"] = iso_ms(rec["time"])
                rows.append({"name": series.name, **rec})
        sections.append(Section(f"result{i}" if i else "result", f"statement {i + 1}", columns, rows))
    return sections


def iso_ms(ms: int | float) -> str:
    """ISO time with milliseconds, so that no precision of an arbitrary query is lost."""
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
