"""What the demo shows while the city runs: nodes online per zone, messages per second,
the buffer depth of each edge, the latest alarms and the staged alarms' latencies.

On a terminal this is a rich Live view refreshed a few times a second; when stdout is not
a terminal (CI, a pipe) it prints one plain progress line every few seconds instead."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hil.stack.edges import EdgeProcess, EdgeSite, metric_sum
from hil.stack.observer import Alarm, CityObserver


@dataclass
class StagedAlarm:
    """One alarm the demo stages, and the latencies measured for it."""

    label: str  # "leak"
    node: str
    district: str
    zone: str
    event: str
    stimulus: dict
    set_at: float | None = None  # monotonic time the stimulus was set
    topic_ms: float | None = None  # stimulus -> alarms/v1/... seen
    influx_ms: float | None = None  # stimulus -> point visible in InfluxDB
    notified_ms: float | None = None  # stimulus -> notification at the institution's webhook
    notified_to: str | None = None  # the institution (Alertmanager receiver) told


@dataclass
class ZoneRow:
    site: EdgeSite
    online: int
    total: int
    rate: float
    buffer_depth: float | None
    edge_up: bool


@dataclass
class CityState:
    """One refresh's worth of figures, gathered from the observer and the edges' metrics."""

    elapsed_s: float
    duration_s: float
    zones: list[ZoneRow]
    alarms: list[Alarm]
    staged: list[StagedAlarm]
    phase: str
    alarms_total: int = 0
    extra: dict = field(default_factory=dict)


def gather(
    observer: CityObserver,
    edges: dict[EdgeSite, EdgeProcess],
    expected: dict[EdgeSite, int],
    staged: list[StagedAlarm],
    started: float,
    duration_s: float,
    phase: str,
) -> CityState:
    nodes = observer.snapshot()
    rates = observer.rates()
    zones = []
    for site, edge in edges.items():
        online = sum(
            1 for n in nodes.values() if n.district == site.district and n.zone == site.zone and n.online
        )
        samples = edge.metrics()
        zones.append(
            ZoneRow(
                site,
                online,
                expected.get(site, 0),
                rates.get((site.district, site.zone), 0.0),
                metric_sum(samples, "sink_pending_lines"),
                bool(samples),
            )
        )
    return CityState(
        time.monotonic() - started,
        duration_s,
        zones,
        observer.latest_alarms(6),
        list(staged),
        phase,
        len(observer.alarms),
    )


def _ms(value: float | None, pending: bool) -> str:
    if value is not None:
        return f"{value:.0f} ms"
    return "waiting" if pending else "-"


def render(state: CityState, header: str) -> Group:
    zones = Table(title="zones", title_justify="left", expand=False)
    for col in ("district", "zone", "nodes online", "msg/s", "edge buffer (lines)"):
        zones.add_column(col, justify="right" if col not in ("district", "zone") else "left")
    for z in state.zones:
        depth = "edge down" if not z.edge_up else ("?" if z.buffer_depth is None else f"{z.buffer_depth:.0f}")
        zones.add_row(z.site.district, z.site.zone, f"{z.online}/{z.total}", f"{z.rate:.1f}", depth)
    alarms = Table(title=f"latest alarms ({state.alarms_total} in all)", title_justify="left")
    for col in ("time", "district/zone", "node", "event", "state", "severity"):
        alarms.add_column(col)
    for a in reversed(state.alarms):
        alarms.add_row(
            datetime.fromtimestamp(a.received_wall).strftime("%H:%M:%S"),
            f"{a.district}/{a.zone}",
            a.node,
            a.event,
            "raised" if a.state else "cleared",
            a.severity or "",
        )
    staged = Table(title="staged alarms: end-to-end latency from the stimulus", title_justify="left")
    for col in ("alarm", "node", "alarms topic", "InfluxDB", "institution"):
        staged.add_column(col)
    for s in state.staged:
        pending = s.set_at is not None
        staged.add_row(
            s.label,
            f"{s.district}/{s.zone}/{s.node}",
            _ms(s.topic_ms, pending),
            _ms(s.influx_ms, pending),
            _ms(s.notified_ms, pending) + (f" {s.notified_to}" if s.notified_to else ""),
        )
    title = Text(
        f"{header}   {state.phase}   {state.elapsed_s:.0f}/{state.duration_s:.0f} s   (Ctrl-C stops)",
        style="bold",
    )
    return Group(title, zones, staged, alarms)


def plain_line(state: CityState) -> str:
    online = sum(z.online for z in state.zones)
    total = sum(z.total for z in state.zones)
    rate = sum(z.rate for z in state.zones)
    depth = sum(z.buffer_depth or 0 for z in state.zones)
    staged = ", ".join(
        f"{s.label} {_ms(s.topic_ms, s.set_at is not None)}/{_ms(s.influx_ms, s.set_at is not None)}"
        for s in state.staged
        if s.set_at is not None
    )
    told = ", ".join(
        f"{s.label} {_ms(s.notified_ms, True)}" + (f" ({s.notified_to})" if s.notified_to else "")
        for s in state.staged
        if s.set_at is not None
    )
    return (
        f"t={state.elapsed_s:3.0f}s {state.phase}: nodes online {online}/{total}, "
        f"{rate:.1f} msg/s, edge buffers {depth:.0f}, alarms {state.alarms_total}"
        + (f"; staged (topic/InfluxDB): {staged}" if staged else "")
        + (f"; institutions told: {told}" if told else "")
    )


class CityView:
    """Either a rich Live view or plain lines, chosen by whether stdout is a terminal."""

    PLAIN_EVERY_S = 5.0

    def __init__(self, console: Console, header: str) -> None:
        self.console = console
        self.header = header
        self.live: Live | None = None
        self._last_plain = 0.0

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal

    def __enter__(self) -> CityView:
        if self.interactive:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def update(self, state: CityState, force: bool = False) -> None:
        if self.live is not None:
            self.live.update(render(state, self.header))
            return
        now = time.monotonic()
        if force or now - self._last_plain >= self.PLAIN_EVERY_S:
            self._last_plain = now
            self.console.print(plain_line(state), markup=False, highlight=False, soft_wrap=True)

    def say(self, line: str) -> None:
        """A line above the live view (or a plain line)."""
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
