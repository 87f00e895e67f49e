"""A misspelt zone, district or database is an error that lists the known ones, never an
empty answer with exit 0 (which would hide open alarms)."""

from __future__ import annotations

import pytest

from tests.ops import city as known
from tests.support.cli import urbansense


def ask(city: known.City, url: str, *args: str):
    return urbansense(*args, "--url", url, "--since", city.since(), "--until", city.until())


def one_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("db", [[], ["--db", "city"]], ids=["district-db", "city-db"])
def test_a_misspelt_zone_does_not_hide_open_alarms(city, influxdb, db):
    right = ask(city, influxdb.url, "query", "alarms", "--district", known.DISTRICT, *db)
    assert right.returncode == 0 and "l-0001" in right.stdout, right.stderr
    wrong = ask(
        city, influxdb.url, "query", "alarms", "--district", known.DISTRICT, "--zone", "caohejng", *db
    )
    where = "district_xuhui" if not db else "city"
    assert one_line(wrong) == (
        f"urbansense: no zone 'caohejng' in {where} for xuhui (did you mean caohejing?): "
        "the zones there are caohejing, xujiahui"
    )
    assert wrong.stdout == ""


def test_a_misspelt_district(city, influxdb):
    own_db = ask(city, influxdb.url, "query", "nodes", "--district", "xuhu")
    line = one_line(own_db)
    assert line.startswith(
        f"urbansense: no database 'district_xuhu' in {influxdb.url} (did you mean district_xuhui?)"
    )
    at_city = ask(city, influxdb.url, "query", "parking", "--db", "city", "--district", "xuhu")
    assert one_line(at_city) == (
        "urbansense: no district 'xuhu' in city (did you mean xuhui?): the districts there are pudong, xuhui"
    )


def test_the_report_and_any_statement_check_too(city, influxdb, tmp_path):
    report = ask(
        city, influxdb.url, "report", "--db", "city", "--zone", "nowhere", "--out", str(tmp_path / "r.html")
    )
    assert one_line(report).startswith("urbansense: no zone 'nowhere' in city: the zones there are ")
    assert not (tmp_path / "r.html").exists()
    raw = urbansense("query", "influxql", "--url", influxdb.url, "--db", "cty", "SHOW MEASUREMENTS")
    assert one_line(raw).startswith(f"urbansense: no database 'cty' in {influxdb.url} (did you mean city?)")
