"""The operations report: one self-contained HTML page (inline CSS and SVG, no scripts, no
network) with occupancy per zone over time, PM2.5 against the AQI bands, an alarm
timeline and node health, each followed by the table it summarizes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from html import escape

from ops import questions, svg
from ops.answer import Answer, Section
from ops.aqi import BREAKPOINTS, CATEGORIES
from ops.scope import Window, iso, now_ms

_INTERVALS = [
    ("1m", 60_000),
    ("5m", 300_000),
    ("10m", 600_000),
    ("15m", 900_000),
    ("30m", 1_800_000),
    ("1h", 3_600_000),
    ("3h", 10_800_000),
    ("6h", 21_600_000),
    ("12h", 43_200_000),
    ("1d", 86_400_000),
]
TIMELINE_ROWS = 40
ALARM_LOOK_BACK_MS = 30 * 86_400_000  # the retention of the district databases
HEALTH_KEYS = [
    ("online", "#2ca02c"),
    ("offline", "#d62728"),
    ("low battery", "#ff7f0e"),
    ("seq gaps", "#9467bd"),
]


def auto_interval(window_ms: int) -> str:
    """The shortest interval that gives at most about 60 points over the window."""
    return next((name for name, ms in _INTERVALS if window_ms / ms <= 60), "1d")


@dataclass
class ReportData:
    db: str
    start_ms: int
    end_ms: int
    interval: str
    place: str
    occupancy: dict[str, list[tuple[int, float]]]
    pm25: dict[str, list[tuple[int, float]]]
    alarm_rows: list[tuple[str, str, list[tuple[int, int, bool]]]]
    alarm_rows_hidden: int
    parking: Answer
    air: Answer
    alarms: Answer
    nodes: Answer


def gather(q: questions.Question, interval: str | None = None) -> ReportData:
    interval = interval or auto_interval(q.window.end_ms - q.window.start_ms)
    occupancy = _by_zone_label(
        {
            k: [(t, share * 100) for t, share in points]
            for k, points in questions.occupancy_series(q, interval).items()
        }
    )
    pm25 = _by_zone_label(questions.pm25_series(q, interval))
    # An alarm raised before the window and never cleared is still open: look back as far as
    # the raw data is kept for the open-alarm table, whatever the report's window.
    look_back = Window(min(q.window.start_ms, q.window.end_ms - ALARM_LOOK_BACK_MS), q.window.end_ms)
    alarms = questions.alarms(replace(q, window=look_back))
    severity = {(r["district"], r["zone"], r["node"], r["event"]): r["severity"] for r in alarms[0].rows}
    alarm_rows = []
    for key, changes in questions.alarm_history(q).items():
        bars, raised = [], None
        for t, state in changes:
            if state and raised is None:
                raised = t
            elif not state and raised is not None:
                bars.append((raised, t, False))
                raised = None
        if raised is not None:
            bars.append((raised, q.window.end_ms, True))
        if bars:
            district, zone, node, event = key
            alarm_rows.append((f"{node} {event}", severity.get(key, _default_severity(event)), bars))
    hidden = max(0, len(alarm_rows) - TIMELINE_ROWS)
    alarm_rows = _most_pressing(alarm_rows)
    place = ", ".join([*q.place.districts, *q.place.zones]) or "all districts and zones"
    return ReportData(
        q.db,
        q.window.start_ms,
        q.window.end_ms,
        interval,
        place,
        occupancy,
        pm25,
        alarm_rows,
        hidden,
        questions.parking(q),
        questions.air(q),
        alarms,
        questions.nodes(q),
    )


def _most_pressing(
    rows: list[tuple[str, str, list[tuple[int, int, bool]]]],
) -> list[tuple[str, str, list[tuple[int, int, bool]]]]:
    """At most TIMELINE_ROWS rows, so a busy city keeps a readable chart: open alarms first,
    then by severity; the tables below the chart list every open alarm."""
    rank = {"critical": 0, "warning": 1, "info": 2}
    if len(rows) <= TIMELINE_ROWS:
        return rows
    ordered = sorted(rows, key=lambda r: (not r[2][-1][2], rank.get(r[1], 3), -r[2][-1][0]))
    return sorted(ordered[:TIMELINE_ROWS], key=lambda r: r[0])


def _by_zone_label(
    series: dict[tuple[str, str], list[tuple[int, float]]],
) -> dict[str, list[tuple[int, float]]]:
    """Series keyed by zone name, or by district/zone when several districts are shown
    (two districts may name a zone alike)."""
    several = len({district for district, _zone in series}) > 1
    return {f"{d}/{z}" if several else z: points for (d, z), points in series.items()}


def _default_severity(event: str) -> str:
    from protocols.catalog import EVENTS

    return EVENTS.get(event, ((), "warning"))[1]


def aqi_bands() -> list[tuple[float, float, str, str]]:
    """PM2.5 concentration bands of the six AQI categories (HJ 633-2012)."""
    points = BREAKPOINTS["pm25"]
    # Categories I..V span one breakpoint interval each; VI (severe) spans the last two.
    edges = [(points[i], points[i + 1]) for i in range(5)] + [(points[5], points[-1])]
    return [(lo, hi, cat.color, f"{cat.level} {cat.name}") for (lo, hi), cat in zip(edges, CATEGORIES)]


def _section_table(section: Section, limit: int = 50) -> str:
    columns = section.table_columns or section.columns
    if not section.rows:
        return f'<p class="empty" data-section="{escape(section.name)}">{escape(section.title)}: none</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in section.rows[:limit]:
        cells = "".join(f"<td>{escape(_cell(row.get(c)))}</td>" for c in columns)
        body.append(f"<tr>{cells}</tr>")
    more = f'<p class="more">… and {len(section.rows) - limit} more</p>' if len(section.rows) > limit else ""
    return (
        f'<table data-section="{escape(section.name)}"><caption>{escape(section.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _tile(label: str, value: object, name: str, alert: bool = False) -> str:
    return (
        f'<div class="tile{" alert" if alert else ""}" data-tile="{name}"><div class="value">{escape(str(value))}</div>'
        f'<div class="label">{escape(label)}</div></div>'
    )


def render(data: ReportData) -> str:
    zones_parking = data.parking[0].rows
    spaces = sum(r["spaces"] for r in zones_parking)
    occupied = sum(r["occupied"] for r in zones_parking)
    air_hourly = data.air[0].rows
    latest_hour = max((r["hour"] for r in air_hourly), default=None)
    worst_now = max(
        (r["aqi"] for r in air_hourly if r["hour"] == latest_hour and r["aqi"] is not None), default=None
    )
    node_zones = data.nodes[0].rows
    offline = sum(z["offline"] for z in node_zones)
    attention = len(data.nodes[1].rows)
    open_alarms = len(data.alarms[0].rows)
    tiles = "".join(
        [
            _tile("spaces occupied now", f"{occupied} / {spaces}", "occupied"),
            _tile(
                "worst zone AQI, last hour",
                "–" if worst_now is None else worst_now,
                "aqi",
                worst_now is not None and worst_now > 100,
            ),
            _tile("open alarms", open_alarms, "alarms", open_alarms > 0),
            _tile("nodes offline", offline, "offline", offline > 0),
            _tile("nodes needing attention", attention, "attention", attention > 0),
        ]
    )
    health_groups = [
        (
            z["zone"],
            {
                "online": z["online"],
                "offline": z["offline"],
                "low battery": z["low_battery"],
                "seq gaps": z["with_gaps"],
            },
        )
        for z in node_zones
    ]
    charts = [
        (
            "occupancy",
            "Parking occupancy per zone",
            svg.line_chart(
                "chart-occupancy",
                "Occupied spaces per zone, % of readings",
                data.occupancy,
                data.start_ms,
                data.end_ms,
                "% occupied",
                y_max=100.0,
            ),
            f"Share of parking readings that reported the space occupied, per {data.interval}.",
            data.parking,
        ),
        (
            "pm25",
            "PM2.5 per zone against the AQI categories",
            svg.line_chart(
                "chart-pm25",
                "PM2.5 per zone (ug/m3) with HJ 633-2012 AQI bands",
                data.pm25,
                data.start_ms,
                data.end_ms,
                "PM2.5 ug/m3",
                bands=aqi_bands(),
            ),
            f"Mean PM2.5 per {data.interval}; the coloured bands are the concentration ranges of the six AQI "
            "categories (HJ 633-2012, 24-hour breakpoints).",
            data.air,
        ),
        (
            "alarms",
            "Alarm timeline",
            svg.timeline(
                "chart-alarms", "Alarms raised and cleared", data.alarm_rows, data.start_ms, data.end_ms
            ),
            "A bar runs from the alarm being raised to its clearing; bars reaching the right edge are still "
            "open. Red: critical, orange: warning."
            + (
                f" {data.alarm_rows_hidden} less pressing alarm series are not drawn."
                if data.alarm_rows_hidden
                else ""
            ),
            data.alarms,
        ),
        (
            "health",
            "Node health per zone",
            svg.bar_chart("chart-health", "Nodes per zone by health", health_groups, HEALTH_KEYS, "nodes"),
            "Nodes online and offline (last health report), with low batteries and readings lost on the way "
            "(seq gaps) in the window.",
            data.nodes,
        ),
    ]
    figures = []
    for name, heading, chart, caption, answer in charts:
        tables = "".join(_section_table(s) for s in answer)
        figures.append(
            f'<section id="{name}"><h2>{escape(heading)}</h2><figure data-chart="{name}">{chart}'
            f"<figcaption>{escape(caption)}</figcaption></figure>{tables}</section>"
        )
    generated = datetime.fromtimestamp(now_ms() / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>urbansense report {escape(iso(data.start_ms) or "")} – {escape(iso(data.end_ms) or "")}</title>
<style>{_CSS}</style></head>
<body data-start="{iso(data.start_ms)}" data-end="{iso(data.end_ms)}" data-db="{escape(data.db)}">
<header><h1>City operations report</h1>
<p>Database <b>{escape(data.db)}</b>, {escape(data.place)}, from <b>{iso(data.start_ms)}</b> to <b>{iso(data.end_ms)}</b>.
Generated {generated}.</p></header>
<div class="tiles">{tiles}</div>
{"".join(figures)}
<footer>urbansense · answers from InfluxQL over the v1 query API · AQI per HJ 633-2012</footer>
</body></html>
"""


_CSS = """
body { font-family: "DejaVu Sans", "Noto Sans", Arial, sans-serif; margin: 24px auto; max-width: 1000px; color: #222;
       background: #fff; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
header p { margin: 0 0 12px; color: #555; }
.tiles { display: flex; gap: 12px; flex-wrap: wrap; }
.tile { border: 1px solid #ccc; border-radius: 6px; padding: 10px 14px; min-width: 150px; }
.tile .value { font-size: 24px; font-weight: bold; } .tile .label { font-size: 12px; color: #555; }
.tile.alert { border-color: #d62728; background: #fff3f3; }
figure { margin: 0; } figcaption { font-size: 12px; color: #555; margin: 2px 0 8px; }
svg.chart { display: block; background: #fff; }
svg .axis { stroke: #444; } svg .grid { stroke: #e4e4e4; } svg .tick { stroke: #444; }
svg text { font-size: 11px; fill: #333; } svg .legend, svg .row-label { font-size: 12px; }
svg .band-label { font-size: 10px; fill: #444; } svg .no-data { font-size: 14px; fill: #888; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0 10px; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; } th { background: #f3f3f3; }
footer { margin-top: 24px; font-size: 11px; color: #777; }
"""
