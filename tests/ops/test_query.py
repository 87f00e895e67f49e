"""`urbansense query` against a real InfluxDB 1.6 holding the known city (tests/ops/city.py).

Every expected value is worked out here from the stimuli tables, at both platform levels:
the district database (raw readings) and the city database (one-minute rollups)."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from cli.main import main
from tests.ops import city as known
from tests.ops.expected import occupancy_pct, zone_air_mean
from tests.ops.expected import parking_zone_nodes as zone_nodes
from tests.support.cli import urbansense

LEVELS = [
    pytest.param(["--district", known.DISTRICT], id="district-raw"),
    pytest.param(["--db", "city", "--district", known.DISTRICT], id="city-rollup"),
]


def ask(capsys, city: known.City, url: str, *args: str) -> dict:
    code = main(["query", *args, "--url", url, "--since", city.since(), "--until", city.until(), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def hour_iso(city: known.City, hour: int) -> str:
    return known._iso(city.t0_ms + hour * known.HOUR_MS)


# -- parking ---------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_parking_now_per_zone(capsys, city, influxdb, level):
    answer = ask(capsys, city, influxdb.url, "parking", *level)
    zones = {row["zone"]: row for row in answer["zones"]}
    assert set(zones) == {"caohejing", "xujiahui"}
    for zone, row in zones.items():
        nodes = zone_nodes(zone)
        # The state now is the last change of each space (p-0004's comes only as an event).
        occupied = sum(known.PARKING[n][1][-1][1] for n in nodes)
        arrivals = sum(len(known.arrivals(n)) for n in nodes)
        assert (row["spaces"], row["occupied"], row["free"]) == (len(nodes), occupied, len(nodes) - occupied)
        assert row["arrivals"] == arrivals
        hours = observed_hours(zone)
        assert row["observed_h"] == pytest.approx(hours, abs=0.01)
        assert row["turnover_per_hour"] == pytest.approx(arrivals / len(nodes) / hours, abs=1e-3)
    # By hand: caohejing ends with p-0001 and p-0003 parked, p-0002 and p-0004 free.
    assert (zones["caohejing"]["occupied"], zones["caohejing"]["free"]) == (2, 2)
    assert zones["caohejing"]["arrivals"] == 5 and zones["caohejing"]["occupancy_pct"] == 50.0


def observed_hours(zone: str) -> float:
    """From the zone's first reading (minute 0) to its last reading or occupancy event (each
    event is written 0.1 minute after its change)."""
    nodes = zone_nodes(zone)
    changes = [minute + 0.1 for n in nodes for minute, _ in known.PARKING[n][1][1:]]
    return max([max(known.parking_reading_minutes()), *changes]) / 60


def test_turnover_does_not_change_with_a_longer_window(capsys, city, influxdb):
    """Asked over two days around three hours of data, a zone turns over as often per hour."""
    exact = ask(capsys, city, influxdb.url, "parking", "--district", known.DISTRICT)["zones"]
    main(
        [
            "query",
            "parking",
            "--url",
            influxdb.url,
            "--district",
            known.DISTRICT,
            "--since",
            "48h",
            "--until",
            known._iso(city.end_ms + 24 * known.HOUR_MS),
            "--json",
        ]
    )
    wide = json.loads(capsys.readouterr().out)["zones"]
    assert [z["turnover_per_hour"] for z in wide] == [z["turnover_per_hour"] for z in exact]
    assert all(z["turnover_per_hour"] > 0 for z in exact)


@pytest.mark.parametrize("level", LEVELS)
def test_parking_occupancy_and_turnover_per_hour(capsys, city, influxdb, level):
    answer = ask(capsys, city, influxdb.url, "parking", *level)
    got = {(row["hour"], row["zone"]): row for row in answer["hourly"]}
    expected = {}
    for zone in ("caohejing", "xujiahui"):
        nodes = zone_nodes(zone)
        for hour in range(known.HOURS):
            hour_arrivals = sum(1 for n in nodes for m in known.arrivals(n) if m // 60 == hour)
            expected[(hour_iso(city, hour), zone)] = (
                occupancy_pct(zone, hour),
                hour_arrivals,
                round(hour_arrivals / len(nodes), 2),
            )
    assert {k: (r["occupancy_pct"], r["arrivals"], r["turnover"]) for k, r in got.items()} == expected
    # By hand, caohejing's first hour: 4 + 5 + 3 + 0 occupied of 24 readings.
    assert got[(hour_iso(city, 0), "caohejing")]["occupancy_pct"] == 50.0


def test_parking_zone_filter(capsys, city, influxdb):
    answer = ask(capsys, city, influxdb.url, "parking", "--district", known.DISTRICT, "--zone", "xujiahui")
    assert [row["zone"] for row in answer["zones"]] == ["xujiahui"]
    assert {row["zone"] for row in answer["hourly"]} == {"xujiahui"}


# -- air -------------------------------------------------------------------------------------

# IAQI worked by hand from HJ 633-2012 Table 1 for the zone means of the stimuli:
# caohejing PM2.5 35, 90, 180 -> 50, 119, 230; PM10 50, 150, 350 -> 50, 100, 200.
# xujiahui PM2.5 10, 20, 30 -> 15, 29, 43; PM10 20, 40, 60 -> 20, 40, 55.
HAND_AQI = {
    ("caohejing", 0): (50, "excellent", None),
    ("caohejing", 1): (119, "lightly polluted", "pm25"),
    ("caohejing", 2): (230, "heavily polluted", "pm25"),
    ("xujiahui", 0): (20, "excellent", None),
    ("xujiahui", 1): (40, "excellent", None),
    ("xujiahui", 2): (55, "good", "pm10"),
}


@pytest.mark.parametrize("level", LEVELS)
def test_air_hourly_means_and_aqi(capsys, city, influxdb, level):
    answer = ask(capsys, city, influxdb.url, "air", *level)
    got = {(row["zone"], row["hour"]): row for row in answer["hourly"]}
    assert len(got) == len(HAND_AQI)
    for (zone, hour), (aqi, category, primary) in HAND_AQI.items():
        pm25, pm10 = zone_air_mean(zone, hour, "pm25"), zone_air_mean(zone, hour, "pm10")
        row = got[(zone, hour_iso(city, hour))]
        assert (row["pm25"], row["pm10"]) == (pm25, pm10)
        assert (row["aqi"], row["category"], row["primary"]) == (aqi, category, primary)


@pytest.mark.parametrize("level", LEVELS)
def test_air_worst_nodes(capsys, city, influxdb, level):
    answer = ask(capsys, city, influxdb.url, "air", *level, "--worst", "2")
    means = {n: sum(pm25) / len(pm25) for n, (_z, pm25, _pm10) in known.AIR.items()}
    worst = sorted(means, key=means.get, reverse=True)[:2]
    assert [row["node"] for row in answer["worst_nodes"]] == worst == ["a-0002", "a-0001"]
    top = answer["worst_nodes"][0]
    assert top["pm25"] == round(means["a-0002"], 1)
    assert top["pm25_max"] == max(p for _m, p, _q in known.air_readings("a-0002"))  # 200 + 5


# -- alarms ----------------------------------------------------------------------------------


def open_alarms(city: known.City, district: str, from_minute: float) -> dict:
    """(node, event) -> (raise minute, value) of alarms whose newest change in the window raised them."""
    out = {}
    for alarm in known.ALARMS:
        changes = [c for c in alarm.changes if from_minute <= c[0] < known.HOURS * 60]
        if alarm.district == district and changes and changes[-1][1]:
            out[(alarm.node, alarm.event)] = (changes[-1][0], changes[-1][2])
    return out


def test_open_alarms_with_place_and_age(capsys, city, influxdb):
    answer = ask(capsys, city, influxdb.url, "alarms", "--district", known.DISTRICT)
    expected = open_alarms(city, known.DISTRICT, 0)
    assert set(expected) == {
        ("l-0001", "leak"),
        ("m-0001", "tilt"),
        ("a-0002", "pm25"),
        ("p-0101", "battery-low"),
    }
    rows = {(r["node"], r["event"]): r for r in answer["open"]}
    assert set(rows) == set(expected)
    for key, (minute, value) in expected.items():
        row = rows[key]
        alarm = next(a for a in known.ALARMS if (a.node, a.event) == key)
        assert (row["zone"], row["kind"], row["severity"], row["value"]) == (
            alarm.zone,
            alarm.kind,
            alarm.severity,
            value,
        )
        assert row["raised_at"] == known._iso(city.at(minute))
        assert row["age_s"] == (city.end_ms - city.at(minute)) // 1000
    # Critical first.
    assert answer["open"][0]["node"] == "l-0001"


def test_alarm_raised_before_the_window_needs_a_longer_look_back(capsys, city, influxdb):
    code = main(
        [
            "query",
            "alarms",
            "--url",
            influxdb.url,
            "--district",
            known.DISTRICT,
            "--since",
            "6h",
            "--until",
            city.until(),
            "--json",
            "--section",
            "open",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = {(r["node"], r["event"]) for r in json.loads(out)}
    assert rows == set(open_alarms(city, known.DISTRICT, -360)) and ("m-0002", "h2s") in rows


def test_alarms_of_the_other_district_at_city_level(capsys, city, influxdb):
    answer = ask(capsys, city, influxdb.url, "alarms", "--db", "city", "--district", known.OTHER_DISTRICT)
    assert [(r["node"], r["zone"], r["event"]) for r in answer["open"]] == [("l-0201", "lujiazui", "leak")]


# -- nodes -----------------------------------------------------------------------------------


def readings_lost_in_window(node: str) -> int:
    """Rises of the node's missing-readings count over the window, from its last value before
    the window, but no more than are still missing at the end."""
    minutes = known.health_minutes()
    before = [known.health_at(node, m)["seq_gaps"] for m in minutes if m < 0]
    values = [known.health_at(node, m)["seq_gaps"] for m in minutes if m >= 0]
    rises = sum(max(0, b - a) for a, b in zip((before[-1:] or [0]) + values, values))
    return int(min(values[-1], rises))


def expected_node_problems() -> dict[str, set[str]]:
    out = defaultdict(set)
    window_minutes = [m for m in known.health_minutes() if m >= 0]
    for node in known.HEALTH_NODES:
        last = known.health_at(node, max(window_minutes))
        if not last["online"]:
            out[node].add("offline")
        if last["battery_v"] < 3.3:
            out[node].add("low battery")
        if readings_lost_in_window(node) > 0:
            out[node].add("seq gaps")
    return dict(out)


@pytest.mark.parametrize("level", LEVELS)
def test_nodes_that_need_attention(capsys, city, influxdb, level):
    answer = ask(capsys, city, influxdb.url, "nodes", *level)
    got = {r["node"]: set(r["problems"].split(", ")) for r in answer["nodes"]}
    expected = expected_node_problems()
    assert (
        got
        == expected
        == {
            "p-0002": {"offline"},
            "l-0001": {"low battery"},
            "p-0101": {"low battery"},
            "p-0003": {"seq gaps"},
            "m-0002": {"seq gaps"},
        }
    )
    gaps = {r["node"]: (r["seq_gaps"], r["seq_gaps_total"]) for r in answer["nodes"]}
    # p-0003: 4 gaps before the window, 9 at its end: 5 readings lost in the window.
    # m-0002: 8 missing before, all filled by late readings, then 2 new ones missing.
    assert gaps["p-0003"] == (5, 9) and gaps["m-0002"] == (2, 2)
    zones = {r["zone"]: r for r in answer["zones"]}
    for zone in ("caohejing", "xujiahui"):
        nodes = [n for n, (_k, z) in known.HEALTH_NODES.items() if z == zone]
        z = zones[zone]
        assert z["nodes"] == len(nodes)
        assert z["offline"] == sum("offline" in expected.get(n, ()) for n in nodes)
        assert z["low_battery"] == sum("low battery" in expected.get(n, ()) for n in nodes)
        assert z["with_gaps"] == sum("seq gaps" in expected.get(n, ()) for n in nodes)
    assert (zones["caohejing"]["readings_lost"], zones["xujiahui"]["readings_lost"]) == (5, 2)


def test_nodes_all_lists_every_node(capsys, city, influxdb):
    answer = ask(capsys, city, influxdb.url, "nodes", "--district", known.DISTRICT, "--all")
    assert {r["node"] for r in answer["nodes"]} == set(known.HEALTH_NODES)


# -- any query, output formats ---------------------------------------------------------------


def test_influxql_returns_rows_with_tags(capsys, city, influxdb):
    code = main(
        [
            "query",
            "influxql",
            "--url",
            influxdb.url,
            "--db",
            f"district_{known.DISTRICT}",
            "--json",
            'SELECT count("pm25") FROM "air" GROUP BY "node"',
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    counts = {r["node"]: r["count"] for r in json.loads(out)["result"]}
    assert counts == {n: len(known.air_readings(n)) for n in known.AIR}


def test_csv_carries_the_same_numbers(capsys, city, influxdb):
    code = main(
        [
            "query",
            "air",
            "--url",
            influxdb.url,
            "--district",
            known.DISTRICT,
            "--since",
            city.since(),
            "--until",
            city.until(),
            "--csv",
            "--section",
            "hourly",
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split(",")[:5] == ["hour", "district", "zone", "pm25", "pm10"]
    assert f"{hour_iso(city, 2)},xuhui,caohejing,180.0,350.0,230,200,230,heavily polluted,pm25" in lines


def test_table_is_the_default(capsys, city, influxdb):
    code = main(
        [
            "query",
            "alarms",
            "--url",
            influxdb.url,
            "--district",
            known.DISTRICT,
            "--since",
            city.since(),
            "--until",
            city.until(),
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0 and "Open alarms" in out and "l-0001" in out and "battery-low" in out


# -- errors: one line, non-zero exit ----------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["query", "alarms", "--url", "http://127.0.0.1:9"], "cannot reach http://127.0.0.1:9"),
        (["query", "nodes", "--url", "http://127.0.0.1:9", "--since", "yesterday"], "bad time 'yesterday'"),
        (["query", "parking", "--url", "ftp://x"], "--url must start with http"),
    ],
)
def test_bad_input_is_one_line(args, message):
    proc = urbansense(*args)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("question", ["parking", "air", "alarms", "nodes"])
def test_missing_database_is_named(city, influxdb, question):
    proc = urbansense("query", question, "--url", influxdb.url, "--db", "district_nowhere")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line.startswith(
        f"urbansense: no database 'district_nowhere' in {influxdb.url}: the databases there are "
    )
    assert {"city", "district_xuhui"} <= set(line.rpartition(" are ")[2].split(", ")), line


def test_empty_window_is_refused():
    proc = urbansense(
        "query",
        "parking",
        "--url",
        "http://127.0.0.1:9",
        "--since",
        "2026-01-02T00:00:00Z",
        "--until",
        "2026-01-01T00:00:00Z",
    )
    assert proc.returncode == 2 and "the window is empty" in proc.stderr


def test_bad_influxql_names_the_problem(influxdb):
    proc = urbansense("query", "influxql", "--url", influxdb.url, "SELEC 1")
    assert proc.returncode == 1
    assert "error parsing query" in proc.stderr and "Traceback" not in proc.stderr
