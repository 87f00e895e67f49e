"""The answers as people and their tools read them: tables that never cut a node id, a time
or a topic (on a narrow terminal or in a pipe), brackets that stay brackets, CSV that any
reader takes, `--section` that lists the sections, times as people write them. (Brackets
in a node's failure reason: tests/field/test_field_mishaps.py.)"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess

from influxdb_client import Point, WritePrecision

from tests.ops import city as known
from tests.support.cli import URBANSENSE, urbansense

LONG_NODE = "xuh-cao-parking-space-0001-east-gate"
TOPIC = "city/v1/xuhui/caohejing/xuh-cao-parking-space-0001-east-gate/event"
MESSAGE = "node: String should match pattern '^[a-z0-9-]{1,32}$' [red]not markup[/red]"


def people_db(influxdb, city: known.City) -> str:
    db = "people_answers"
    influxdb.create_database(db)
    point = (
        Point("dead_letters")
        .tag("node", LONG_NODE)
        .tag("topic", TOPIC)
        .field("reason", MESSAGE)
        .field("count", 1.0)
        .time(city.at(30), WritePrecision.MS)
    )
    known.write(influxdb.url, db, [point])
    return db


def on_a_terminal(args: list[str], columns: int) -> str:
    """Run with a pseudo-terminal of `columns` columns as stdout; what it printed."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm"}
    proc = subprocess.Popen([URBANSENSE, *args], stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    out = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(60) == 0, proc.stderr.read()
    return out.decode(errors="replace")


def test_tables_never_cut_identifying_columns(city, influxdb):
    db = people_db(influxdb, city)
    args = ["query", "influxql", "--url", influxdb.url, "--db", db, 'SELECT * FROM "dead_letters"']
    piped = urbansense(*args)
    assert piped.returncode == 0, piped.stderr
    for text in (LONG_NODE, TOPIC, MESSAGE, known._iso(city.at(30)).replace("Z", ".000Z")):
        assert text in piped.stdout, piped.stdout
    narrow = on_a_terminal(args, 80)
    assert LONG_NODE in narrow and TOPIC in narrow, narrow
    assert "…" not in narrow


def test_sections_are_listed_and_csv_is_one_table(city, influxdb):
    base = ["query", "parking", "--url", influxdb.url, "--district", known.DISTRICT]
    window = ["--since", city.since(), "--until", city.until()]
    wrong = urbansense(*base, *window, "--section", "zone")
    assert wrong.returncode == 2
    assert (
        wrong.stderr.strip() == "urbansense: no section 'zone' in this answer: its sections are zones, hourly"
    )
    both = urbansense(*base, *window, "--csv")
    assert both.returncode == 0, both.stderr
    rows = list(csv.DictReader(io.StringIO(both.stdout)))
    assert not any(line.startswith("#") for line in both.stdout.splitlines())
    assert {r["section"] for r in rows} == {"zones", "hourly"}
    zones = [r for r in rows if r["section"] == "zones"]
    assert [r["zone"] for r in zones] == ["caohejing", "xujiahui"] and all(r["hour"] == "" for r in zones)
    assert all(r["hour"] for r in rows if r["section"] == "hourly")


def test_times_as_people_write_them(city, influxdb):
    base = ["query", "alarms", "--url", influxdb.url, "--district", known.DISTRICT, "--json"]
    signed = urbansense(*base, "--since", "-30d")
    plain = urbansense(*base, "--since", "30d")
    assert signed.returncode == 0, signed.stderr

    def alarms(proc) -> list[tuple[str, str]]:
        return [(a["node"], a["event"]) for a in json.loads(proc.stdout)["open"]]

    assert alarms(signed) == alarms(plain) and alarms(signed)
    local = city.since().removesuffix("Z")
    no_zone = urbansense(*base, "--since", local)
    assert no_zone.returncode == 0, no_zone.stderr
    assert no_zone.stderr.strip() == (
        f"urbansense: note: {local} has no time zone: read as UTC ({city.since()}); "
        "add Z or an offset such as +08:00"
    )
