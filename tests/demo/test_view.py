"""The demo's live view: the same figures as a rich view on a terminal and as plain lines
in a pipe."""

from __future__ import annotations

import io
import time

from rich.console import Console

from demo.view import CityState, CityView, StagedAlarm, ZoneRow, plain_line
from hil.stack.edges import EdgeSite, metric_sum
from hil.stack.observer import Alarm


def _state() -> CityState:
    now = time.monotonic()
    zones = [
        ZoneRow(EdgeSite("xuhui", "caohejing"), 7, 8, 3.2, 12, True),
        ZoneRow(EdgeSite("minhang", "zizhu"), 8, 8, 4.0, None, False),
    ]
    alarms = [Alarm(now, time.time(), "xuhui", "caohejing", "xuh-cao-l01", "leak", True, "critical", 4000.0)]
    staged = [
        StagedAlarm(
            "leak",
            "xuh-cao-l01",
            "xuhui",
            "caohejing",
            "leak",
            {"wet": True},
            set_at=now,
            topic_ms=212.4,
            influx_ms=230.9,
        ),
        StagedAlarm("gas (CH4)", "min-xin-m01", "minhang", "xinzhuang", "ch4", {"ch4_lel": 30}, set_at=now),
        StagedAlarm("manhole cover opened", "min-ziz-m01", "minhang", "zizhu", "cover-open", {}),
    ]
    return CityState(12.0, 60.0, zones, alarms, staged, "running", alarms_total=1)


def test_plain_line_sums_the_city():
    line = plain_line(_state())
    assert line.startswith("t= 12s running: nodes online 15/16, 7.2 msg/s, edge buffers 12, alarms 1")
    assert "staged (topic/InfluxDB): leak 212 ms/231 ms, gas (CH4) waiting/waiting" in line
    assert "manhole" not in line  # not staged yet


def test_terminal_view_shows_zones_alarms_and_latencies():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    with CityView(console, "city in a box") as view:
        assert view.interactive
        view.update(_state())
    text = out.getvalue()
    for expected in (
        "caohejing",
        "7/8",
        "3.2",
        "edge down",
        "xuh-cao-l01",
        "critical",
        "212 ms",
        "231 ms",
        "waiting",
        "12/60 s",
    ):
        assert expected in text, expected


def test_pipe_gets_plain_lines_at_most_every_few_seconds():
    out = io.StringIO()
    with CityView(Console(file=out, force_terminal=False), "city") as view:
        assert not view.interactive
        view.update(_state())
        view.update(_state())  # too soon: dropped
        view.update(_state(), force=True)  # the final line always goes out
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(ln.startswith("t= 12s running") for ln in lines)


def test_metric_sum_matches_names_by_words():
    samples = {
        "urbansense_edge_sink_pending_lines{sink=city}": 3.0,
        "urbansense_edge_sink_pending_lines{sink=district}": 4.0,
        "urbansense_edge_messages_in_total{channel=event}": 2.0,
        "urbansense_edge_messages_in_created{channel=event}": 1.7e9,
    }
    assert metric_sum(samples, "sink_pending_lines") == 7.0
    assert metric_sum(samples, "messages_in") == 2.0
    assert metric_sum(samples, "no_such_metric") is None
