"""The Grafana dashboard (deploy/grafana): every panel's InfluxQL, with Grafana's macros and
template variables substituted as Grafana substitutes them, runs against the real InfluxDB
holding the known city and returns rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ops.client import InfluxQLClient
from tests.ops import city as known

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "urbansense-operations.json").read_text())
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
DB = f"district_{known.DISTRICT}"


def substitute(query: str, city: known.City, zone: str) -> str:
    """What Grafana sends: $timeFilter is the dashboard's time range, $__interval the bucket
    width for the panel's width, a variable set to All is its allValue (.*)."""
    out = (
        query.replace("$timeFilter", f"time >= {city.t0_ms}ms and time <= {city.end_ms}ms")
        .replace("$__interval", "10m")
        .replace("$district", ".*")
        .replace("$zone", zone)
    )
    assert not re.search(r"\$[\w{]", out), f"unsubstituted macro in {out}"
    return out


def run(influxdb, panel: dict, city: known.City, zone: str) -> list[list[dict]]:
    client = InfluxQLClient(influxdb.url)
    return [
        [rec for s in client.one(substitute(t["query"], city, zone), db=DB) for rec in s.records()]
        for t in panel["targets"]
    ]


def test_dashboard_has_a_panel_for_each_question():
    titles = " ".join(p["title"].lower() for p in PANELS)
    for words in (
        "occupied and free",
        "occupancy rate",
        "turnover",
        "pm2.5",
        "aqi",
        "pm10",
        "worst nodes",
        "open alarms",
        "alarm timeline",
        "offline",
        "low battery",
        "seq gaps",
    ):
        assert words in titles, words
    for panel in PANELS:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(t["rawQuery"] and t["query"].startswith(("SELECT", "SHOW")) for t in panel["targets"])


@pytest.mark.parametrize("zone", [".*", "caohejing"], ids=["all-zones", "one-zone"])
@pytest.mark.parametrize("panel", PANELS, ids=[p["title"] for p in PANELS])
def test_every_panel_query_returns_rows(city, influxdb, panel, zone):
    for target, rows in zip(panel["targets"], run(influxdb, panel, city, zone)):
        assert rows, f"{panel['title']} {target['refId']}: no rows"
        if zone != ".*":
            assert {r["zone"] for r in rows if "zone" in r} <= {zone}


def test_open_alarms_panel_matches_the_stimuli(city, influxdb):
    panel = next(p for p in PANELS if p["title"] == "Open alarms")
    (rows,) = run(influxdb, panel, city, ".*")
    expected = {
        (a.node, a.event)
        for a in known.ALARMS
        if a.district == known.DISTRICT and 0 <= a.changes[-1][0] and a.changes[-1][1]
    }
    assert {(r["node"], r["event"]) for r in rows} == expected


def test_offline_panel_shows_the_offline_node(city, influxdb):
    panel = next(p for p in PANELS if p["title"] == "Offline nodes")
    (rows,) = run(influxdb, panel, city, ".*")
    assert [r["node"] for r in rows] == [
        n for n, ch in known.HEALTH_CHANGES.items() if any(c.get("online") is False for _m, c in ch)
    ]


def test_template_variables_list_districts_and_zones(city, influxdb):
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    client = InfluxQLClient(influxdb.url)
    districts = {r["value"] for s in client.one(variables["district"]["query"], db=DB) for r in s.records()}
    zone_query = variables["zone"]["query"].replace("$district", known.DISTRICT)
    zones = {r["value"] for s in client.one(zone_query, db=DB) for r in s.records()}
    assert districts == {known.DISTRICT}
    assert zones == {z for _k, z in known.HEALTH_NODES.values()}


def test_provisioning_files_point_at_the_dashboard_and_an_influxql_source():
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "urbansense.yaml").read_text())
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "urbansense.yaml").read_text())
    regex = next(v for v in DASHBOARD["templating"]["list"] if v["type"] == "datasource")["regex"].strip("/")
    assert all(
        s["type"] == "influxdb" and s["jsonData"]["dbName"].startswith("district_")
        for s in sources["datasources"]
    )
    assert all(re.search(regex, s["name"]) for s in sources["datasources"])
    assert providers["providers"][0]["type"] == "file"


def test_seq_gaps_panel_counts_rises_of_the_counter(city, influxdb):
    panel = next(p for p in PANELS if p["title"].startswith("Readings lost"))
    (rows,) = run(influxdb, panel, city, ".*")
    # p-0003 rises 4 -> 6 -> 9 inside the window; m-0002 falls 8 -> 0 (late readings), then
    # rises to 2. l-0002's one reading was missing for half an hour and then arrived: the
    # panel counts the rise (InfluxQL cannot cap it by what is still missing), while
    # `urbansense query nodes` reports nothing lost for it.
    assert {r["node"]: r["lost"] for r in rows} == {"p-0003": 5, "m-0002": 2, "l-0002": 1}
