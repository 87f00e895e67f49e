"""`urbansense report`: the page is opened in headless Chromium (Debian's `chromium`); the
screenshot must show every chart drawn, and the DOM after rendering must carry the numbers
of the known city (tests/ops/city.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from cli.main import main
from tests.ops import city as known
from tests.ops.expected import occupancy_pct, zone_air_mean
from tests.support.cli import urbansense

WINDOW = (1100, 3000)
CHARTS = ("chart-occupancy", "chart-pm25", "chart-alarms", "chart-health")
# Writes each chart's on-screen box into the DOM, so --dump-dom tells where to look in the
# screenshot (a copy of the page gets it; the screenshot is of the page as written).
BOX_SCRIPT = """<script>
for (const el of document.querySelectorAll("svg.chart")) {
  const r = el.getBoundingClientRect();
  el.setAttribute("data-box", [r.left, r.top, r.right, r.bottom].map(Math.round).join(","));
}
</script></body>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(exe).exists(), "chromium is not installed (bash deploy/run.sh test, as root, installs it)"
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


class Elements(HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.items.append((tag, {k: v or "" for k, v in attrs}))

    def with_attr(self, name: str) -> list[dict[str, str]]:
        return [a for _t, a in self.items if name in a]


@pytest.fixture(scope="module")
def rendered(known_city, _influxdb_session, tmp_path_factory):
    """The report of the known city, its DOM after Chromium rendered it, and a screenshot."""
    folder = tmp_path_factory.mktemp("report")
    page = folder / "report.html"
    code = main(
        [
            "report",
            "--url",
            _influxdb_session.url,
            "--district",
            known.DISTRICT,
            "--since",
            known_city.since(),
            "--until",
            known_city.until(),
            "--interval",
            "1h",
            "--out",
            str(page),
        ]
    )
    assert code == 0
    html = page.read_text()
    boxed = folder / "boxed.html"
    boxed.write_text(html.replace("</body>", BOX_SCRIPT))
    dom = chromium("--dump-dom", boxed.as_uri(), profile=folder / "profile-dom")
    assert dom.returncode == 0 and "<svg" in dom.stdout, dom.stderr[-2000:]
    shot = folder / "report.png"
    proc = chromium(f"--screenshot={shot}", page.as_uri(), profile=folder / "profile-shot")
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    parser = Elements()
    parser.feed(dom.stdout)
    return {"html": html, "dom": parser, "shot": shot, "city": known_city}


def test_page_needs_no_network(rendered):
    html = rendered["html"]
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|url\(|@import", html, re.I)
    # The only URL is the SVG namespace, which is a name, never fetched.
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}


def test_every_chart_is_drawn_in_the_screenshot(rendered):
    image = Image.open(rendered["shot"]).convert("RGB")
    boxes = {
        a["id"]: tuple(int(v) for v in a["data-box"].split(","))
        for a in rendered["dom"].with_attr("data-box")
    }
    assert set(boxes) == set(CHARTS)
    colours_expected = {
        "chart-occupancy": [(0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)],  # the two zones' lines
        "chart-pm25": [(0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)],
        "chart-alarms": [(0xD6, 0x27, 0x28), (0xFF, 0x7F, 0x0E)],  # critical and warning bars
        "chart-health": [(0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28), (0xFF, 0x7F, 0x0E), (0x94, 0x67, 0xBD)],
    }
    for chart, (left, top, right, bottom) in boxes.items():
        assert right - left >= 900 and bottom - top >= 150 and bottom <= WINDOW[1], (chart, boxes[chart])
        counts = image.crop((left, top, right, bottom)).getcolors(1 << 24)
        area = (right - left) * (bottom - top)
        inked = 1 - sum(n for n, c in counts if c == (255, 255, 255)) / area
        assert inked > 0.03, f"{chart}: only {inked:.1%} of its area is drawn"
        colours = {c for _n, c in counts}
        for colour in colours_expected[chart]:
            assert any(max(abs(a - b) for a, b in zip(colour, c)) <= 6 for c in colours), (
                f"{chart}: no {colour}"
            )
    # The PM2.5 chart shows the AQI bands: the green of category I, lightened by the band's opacity.
    left, top, right, bottom = boxes["chart-pm25"]
    band = image.crop((left, top, right, bottom)).getcolors(1 << 20)
    assert any(g > 200 and r < 190 and b < 190 for _n, (r, g, b) in band), "no green AQI band"


def test_occupancy_chart_carries_the_hourly_numbers(rendered):
    city = rendered["city"]
    occupancy = {
        (a["data-series"], a["data-time"]): float(a["data-value"])
        for a in _in_chart(rendered, "chart-occupancy")
        if a.get("class") == "point"
    }
    expected = {
        (zone, known._iso(city.t0_ms + h * known.HOUR_MS)): occupancy_pct(zone, h)
        for zone in ("caohejing", "xujiahui")
        for h in range(known.HOURS)
    }
    assert occupancy == expected


def test_pm25_chart_carries_the_hourly_means(rendered):
    city = rendered["city"]
    got = {
        (a["data-series"], a["data-time"]): float(a["data-value"])
        for a in _in_chart(rendered, "chart-pm25")
        if a.get("class") == "point"
    }
    expected = {
        (zone, known._iso(city.t0_ms + h * known.HOUR_MS)): zone_air_mean(zone, h, "pm25")
        for zone in ("caohejing", "xujiahui")
        for h in range(known.HOURS)
    }
    assert got == expected
    bands = [a["data-band"] for a in _in_chart(rendered, "chart-pm25") if "data-band" in a]
    # The y axis reaches above 180 ug/m3, so five of the six category bands show.
    assert bands == [
        "I excellent",
        "II good",
        "III lightly polluted",
        "IV moderately polluted",
        "V heavily polluted",
    ]


def test_alarm_timeline_carries_raises_and_clears(rendered):
    city = rendered["city"]
    got = {
        (a["data-alarm"], a["data-start"], a["data-end"], a["data-open"])
        for a in _in_chart(rendered, "chart-alarms")
        if "data-alarm" in a
    }
    expected = set()
    for alarm in known.ALARMS:
        if alarm.district != known.DISTRICT:
            continue
        raised = None
        for minute, state, _value in alarm.changes:
            if state:
                raised = max(minute, 0)  # raised before the window: drawn from its start
            else:
                expected.add(
                    (
                        f"{alarm.node} {alarm.event}",
                        known._iso(city.at(raised)),
                        known._iso(city.at(minute)),
                        "false",
                    )
                )
                raised = None
        if raised is not None:
            expected.add(
                (f"{alarm.node} {alarm.event}", known._iso(city.at(raised)), known._iso(city.end_ms), "true")
            )
    assert got == expected
    assert ("m-0002 h2s", city.since(), city.until(), "true") in got


def test_node_health_chart_carries_the_counts(rendered):
    bars = {
        (a["data-group"], a["data-key"]): int(a["data-value"])
        for a in _in_chart(rendered, "chart-health")
        if "data-group" in a
    }
    nodes = {
        zone: [n for n, (_k, z) in known.HEALTH_NODES.items() if z == zone]
        for zone in ("caohejing", "xujiahui")
    }
    # From the stimuli: p-0002 (caohejing) offline; l-0001 (caohejing) and p-0101 (xujiahui) low;
    # p-0003 (caohejing) and m-0002 (xujiahui) lost readings in the window.
    assert bars == {
        ("caohejing", "online"): len(nodes["caohejing"]) - 1,
        ("caohejing", "offline"): 1,
        ("caohejing", "low battery"): 1,
        ("caohejing", "seq gaps"): 1,
        ("xujiahui", "online"): len(nodes["xujiahui"]),
        ("xujiahui", "offline"): 0,
        ("xujiahui", "low battery"): 1,
        ("xujiahui", "seq gaps"): 1,
    }


def test_tiles_summarize_the_city(rendered):
    html = rendered["html"]
    tiles = dict(re.findall(r'data-tile="(\w+)"><div class="value">([^<]*)<', html))
    spaces = len(known.PARKING)
    occupied = sum(changes[-1][1] for _z, changes in known.PARKING.values())
    # Open alarms: the four raised in the window and m-0002's, raised before it and never cleared.
    open_alarms = sum(1 for a in known.ALARMS if a.district == known.DISTRICT and a.changes[-1][1])
    assert open_alarms == 5
    assert tiles == {
        "occupied": f"{occupied} / {spaces}",
        "aqi": "230",
        "alarms": str(open_alarms),
        "offline": "1",
        "attention": "5",
    }


def _in_chart(rendered, chart_id: str) -> list[dict[str, str]]:
    """Attributes of the elements inside one chart's <svg>."""
    out, inside = [], False
    for tag, attrs in rendered["dom"].items:
        if tag == "svg":
            inside = attrs.get("id") == chart_id
        elif inside:
            out.append(attrs)
    return out


def test_report_errors_are_one_line(tmp_path):
    proc = urbansense("report", "--url", "http://127.0.0.1:9", "--out", str(tmp_path / "r.html"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "cannot reach" in proc.stderr
    proc = urbansense("report", "--url", "http://127.0.0.1:9", "--out", str(tmp_path / "no" / "r.html"))
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    proc = urbansense("report", "--url", "http://127.0.0.1:9", "--interval", "soon")
    assert proc.returncode == 2 and "bad --interval" in proc.stderr


def test_busy_timeline_keeps_the_open_and_severe_alarms():
    from ops.report import TIMELINE_ROWS, _most_pressing

    closed = [(f"n-{i:03d} leak", "critical", [(1000, 2000, False)]) for i in range(TIMELINE_ROWS)]
    open_info = [("z-open info", "info", [(1000, 9000, True)])]
    open_critical = [("z-open critical", "critical", [(1500, 9000, True)])]
    rows = _most_pressing(closed + open_info + open_critical)
    labels = [r[0] for r in rows]
    assert len(rows) == TIMELINE_ROWS
    assert "z-open info" in labels and "z-open critical" in labels
    assert labels == sorted(labels)


def test_city_wide_report_names_zones_with_their_district(capsys, known_city, _influxdb_session, tmp_path):
    out = tmp_path / "city.html"
    assert (
        main(
            [
                "report",
                "--url",
                _influxdb_session.url,
                "--db",
                "city",
                "--since",
                known_city.since(),
                "--until",
                known_city.until(),
                "--interval",
                "1h",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    series = set(re.findall(r'<g class="series" data-series="([^"]+)"', out.read_text()))
    # Occupancy and PM2.5 come from the xuhui rollups only: zone names suffice.
    assert series == {"caohejing", "xujiahui"}
    from ops.report import _by_zone_label

    assert set(_by_zone_label({("xuhui", "a"): [], ("pudong", "a"): []})) == {"xuhui/a", "pudong/a"}
