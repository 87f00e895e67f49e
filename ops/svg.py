"""The report's charts as inline SVG, drawn here.

Why by hand: the report must open with no network, so a JavaScript charting library would
have to be pasted into every page, and matplotlib is a large dependency for four simple
charts. Lines, bands and bars are a few rectangles and polylines; drawing them here also
keeps every plotted number in the DOM (`data-*` attributes and `<title>` tooltips), where
people hover to read it and tests can check it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)
SEVERITY_COLORS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}
WIDTH = 960
LEFT, RIGHT, TOP, BOTTOM = 64, 180, 16, 36
_TIME_STEPS_MS = [m * 60_000 for m in (1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)]


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _fmt(value: float) -> str:
    return f"{value:.1f}" if abs(value - round(value)) > 1e-9 else str(int(round(value)))


def _clock(ms: int, span_ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%H:%M" if span_ms <= 86_400_000 else "%m-%d %H:%M")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Frame:
    """Maps time (x) and values (y) onto the plotting area of a chart."""

    start_ms: int
    end_ms: int
    y_min: float
    y_max: float
    height: int

    @property
    def bottom(self) -> float:
        return self.height - BOTTOM

    def x(self, ms: float) -> float:
        return LEFT + (ms - self.start_ms) / (self.end_ms - self.start_ms) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return self.bottom - (value - self.y_min) / (self.y_max - self.y_min) * (self.bottom - TOP)


def nice_max(value: float) -> float:
    """A round upper bound at or above `value` (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _time_axis(frame: Frame) -> list[str]:
    span = frame.end_ms - frame.start_ms
    step = next((s for s in _TIME_STEPS_MS if span / s <= 8), _TIME_STEPS_MS[-1])
    first = frame.start_ms + (-frame.start_ms) % step
    parts = [f'<line class="axis" x1="{LEFT}" y1="{frame.bottom}" x2="{WIDTH - RIGHT}" y2="{frame.bottom}"/>']
    for t in range(first, frame.end_ms + 1, step):
        x = frame.x(t)
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{frame.bottom}" x2="{x:.1f}" y2="{frame.bottom + 4}"/>'
            f'<text class="tick-label" x="{x:.1f}" y="{frame.bottom + 16}" text-anchor="middle">'
            f"{_clock(t, span)}</text>"
        )
    parts.append(
        f'<text class="axis-label" x="{WIDTH - RIGHT}" y="{frame.bottom + 30}" text-anchor="end">UTC</text>'
    )
    return parts


def _divisions(top: float) -> int:
    """Grid lines that land on round numbers: 2 splits in 4 (0.5 steps), 1, 2.5 and 5 in 5."""
    mantissa = top / 10 ** math.floor(math.log10(top)) if top > 0 else 1
    return 4 if abs(mantissa - 2) < 1e-9 else 5


def _value_axis(frame: Frame, unit: str) -> list[str]:
    parts = []
    n = _divisions(frame.y_max - frame.y_min)
    for i in range(n + 1):
        v = frame.y_min + (frame.y_max - frame.y_min) * i / n
        y = frame.y(v)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
            f'<text class="tick-label" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>'
        )
    parts.append(
        f'<text class="axis-label" x="14" y="{TOP + (frame.bottom - TOP) / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + (frame.bottom - TOP) / 2:.1f})">{escape(unit)}</text>'
    )
    return parts


def _svg(chart_id: str, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg id="{_attr(chart_id)}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{_attr(title)}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _legend(entries: list[tuple[str, str]]) -> str:
    """Colour swatches with their labels, in the right margin."""
    parts = []
    for i, (label, color) in enumerate(entries):
        y = TOP + 14 + 18 * i
        parts.append(
            f'<rect x="{WIDTH - RIGHT + 12}" y="{y - 9}" width="12" height="12" fill="{color}"/>'
            f'<text class="legend" x="{WIDTH - RIGHT + 30}" y="{y + 1}">{escape(label)}</text>'
        )
    return "".join(parts)


def _no_data(frame: Frame) -> str:
    return (
        f'<text class="no-data" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{(TOP + frame.bottom) / 2}" '
        'text-anchor="middle">no data in this window</text>'
    )


def line_chart(
    chart_id: str,
    title: str,
    series: dict[str, list[tuple[int, float]]],
    start_ms: int,
    end_ms: int,
    unit: str,
    y_max: float | None = None,
    bands: list[tuple[float, float, str, str]] | None = None,
    height: int = 300,
) -> str:
    """One line per series over the window; optional horizontal bands (low, high, colour, label)."""
    values = [v for points in series.values() for _t, v in points]
    top = y_max if y_max is not None else nice_max(max(values, default=0) * 1.1)
    frame = Frame(start_ms, end_ms, 0.0, top, height)
    body: list[str] = []
    for low, high, color, label in bands or []:
        if low >= top:
            continue
        y_hi, y_lo = frame.y(min(high, top)), frame.y(low)
        body.append(
            f'<rect class="band" data-band="{_attr(label)}" x="{LEFT}" y="{y_hi:.1f}" '
            f'width="{WIDTH - LEFT - RIGHT}" height="{y_lo - y_hi:.1f}" fill="{color}" fill-opacity="0.35">'
            f"<title>{escape(label)}: {_fmt(low)}–{_fmt(high)} {escape(unit)}</title></rect>"
            f'<text class="band-label" x="{WIDTH - RIGHT - 4}" y="{y_lo - 4:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    body += _value_axis(frame, unit) + _time_axis(frame)
    if not values:
        body.append(_no_data(frame))
    for i, (label, points) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{frame.x(t):.1f},{frame.y(v):.1f}" for t, v in points)
        body.append(
            f'<g class="series" data-series="{_attr(label)}"><polyline points="{coords}" fill="none" '
            f'stroke="{color}" stroke-width="2.5"/>'
        )
        for t, v in points:
            body.append(
                f'<circle class="point" cx="{frame.x(t):.1f}" cy="{frame.y(v):.1f}" r="3.5" fill="{color}" '
                f'data-series="{_attr(label)}" data-time="{iso(t)}" data-value="{round(v, 1)}">'
                f"<title>{escape(label)} {iso(t)}: {round(v, 1)} {escape(unit)}</title></circle>"
            )
        body.append("</g>")
    body.append(_legend([(label, PALETTE[i % len(PALETTE)]) for i, label in enumerate(sorted(series))]))
    return _svg(chart_id, height, title, body)


def timeline(
    chart_id: str,
    title: str,
    rows: list[tuple[str, str, list[tuple[int, int, bool]]]],
    start_ms: int,
    end_ms: int,
) -> str:
    """One row per label with bars (start, end, still open), coloured by the row's severity."""
    row_h = 22
    height = TOP + BOTTOM + row_h * max(len(rows), 1) + 8
    frame = Frame(start_ms, end_ms, 0.0, 1.0, height)
    body = _time_axis(frame)
    if not rows:
        body.append(_no_data(frame))
    for i, (label, severity, bars) in enumerate(rows):
        y = TOP + 4 + i * row_h
        color = SEVERITY_COLORS.get(severity, "#7f7f7f")
        body.append(f'<text class="row-label" x="{WIDTH - RIGHT + 8}" y="{y + 14}">{escape(label)}</text>')
        body.append(
            f'<line class="grid" x1="{LEFT}" y1="{y + row_h - 2}" x2="{WIDTH - RIGHT}" y2="{y + row_h - 2}"/>'
        )
        for bar_start, bar_end, still_open in bars:
            x0, x1 = frame.x(bar_start), frame.x(bar_end)
            body.append(
                f'<rect class="alarm" x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 3):.1f}" height="{row_h - 8}" '
                f'fill="{color}" data-alarm="{_attr(label)}" data-severity="{_attr(severity)}" '
                f'data-start="{iso(bar_start)}" data-end="{iso(bar_end)}" '
                f'data-open="{"true" if still_open else "false"}">'
                f"<title>{escape(label)}: raised {iso(bar_start)}, "
                f"{'still open' if still_open else 'cleared ' + iso(bar_end)}</title></rect>"
            )
    return _svg(chart_id, height, title, body)


def bar_chart(
    chart_id: str,
    title: str,
    groups: list[tuple[str, dict[str, int]]],
    keys: list[tuple[str, str]],
    unit: str,
) -> str:
    """Grouped vertical bars: one group per label, one bar per (key, colour)."""
    height = 300
    top = nice_max(max((v for _g, counts in groups for v in counts.values()), default=0) * 1.1)
    frame = Frame(0, 1, 0.0, top, height)
    body = _value_axis(frame, unit)
    body.append(
        f'<line class="axis" x1="{LEFT}" y1="{frame.bottom}" x2="{WIDTH - RIGHT}" y2="{frame.bottom}"/>'
    )
    if not groups:
        body.append(_no_data(frame))
    group_w = (WIDTH - LEFT - RIGHT) / max(len(groups), 1)
    bar_w = min(28.0, group_w * 0.8 / len(keys))
    for g, (label, counts) in enumerate(groups):
        x_group = LEFT + g * group_w + (group_w - bar_w * len(keys)) / 2
        for k, (key, color) in enumerate(keys):
            value = counts.get(key, 0)
            y = frame.y(value)
            body.append(
                f'<rect class="bar" x="{x_group + k * bar_w:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{frame.bottom - y:.1f}" fill="{color}" data-group="{_attr(label)}" '
                f'data-key="{_attr(key)}" data-value="{value}"><title>{escape(label)} {escape(key)}: '
                f"{value}</title></rect>"
            )
        body.append(
            f'<text class="tick-label" x="{LEFT + (g + 0.5) * group_w:.1f}" y="{frame.bottom + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    body.append(_legend(keys))
    return _svg(chart_id, height, title, body)
