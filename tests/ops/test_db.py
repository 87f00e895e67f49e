"""`urbansense db init` on a real InfluxDB 1.6 (its own, since it changes default retention
policies), and the InfluxDB 2.x bucket requests it builds.

No InfluxDB 2.x server can be installed here, and VictoriaMetrics (the stand-in for the v2
write endpoint) has no bucket API: so the v2 path is tested by the exact JSON bodies it
sends and by the one-line error it gives against an endpoint without buckets."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from cli.main import main
from ops import retention
from ops.client import InfluxQLClient
from tests.support.cli import urbansense

DAY = 86_400


@pytest.fixture(scope="module")
def own_influxdb(tmp_path_factory):
    from hil.services import InfluxDBServer

    server = InfluxDBServer(tmp_path_factory.mktemp("influxdb-retention"))
    server.start()
    yield server
    server.stop()


def init(capsys, url: str, *args: str) -> list[dict]:
    code = main(["db", "init", "--url", url, "--json", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def policies(url: str, db: str) -> dict[str, dict]:
    return {
        r["name"]: r
        for s in InfluxQLClient(url).one(f'SHOW RETENTION POLICIES ON "{db}"')
        for r in s.records()
    }


def test_v1_creates_databases_with_default_policies_and_is_idempotent(capsys, own_influxdb):
    url = own_influxdb.url
    first = init(capsys, url, "--district", "minhang", "--district", "jiading")
    assert [(r["database"], r["action"]) for r in first] == [
        ("district_minhang", "created"),
        ("district_jiading", "created"),
        ("city", "created"),
    ]
    raw = policies(url, "district_minhang")
    assert set(raw) == {"raw"}  # no autogen: writes without rp land in "raw"
    assert (raw["raw"]["duration"], raw["raw"]["shardGroupDuration"], raw["raw"]["default"]) == (
        "720h0m0s",
        "24h0m0s",
        True,
    )  # 30 days, 1-day shards
    city = policies(url, "city")["rollup"]
    assert (city["duration"], city["shardGroupDuration"], city["default"]) == ("17520h0m0s", "168h0m0s", True)

    again = init(capsys, url, "--district", "minhang", "--district", "jiading")
    assert {r["action"] for r in again} == {"unchanged"}

    changed = init(capsys, url, "--district", "minhang", "--raw-days", "7")
    assert [r["action"] for r in changed] == ["updated", "unchanged"]
    assert policies(url, "district_minhang")["raw"]["duration"] == "168h0m0s"


def test_v1_existing_database_gets_the_policy_as_default(capsys, own_influxdb):
    url = own_influxdb.url
    own_influxdb.create_database("district_putuo")  # made with autogen, as a bare CREATE DATABASE does
    result = init(capsys, url, "--district", "putuo")
    assert result[0]["action"] == "policy added"
    body = f"parking,district=putuo,zone=z,node=p-1 occupied=true {int(time.time() * 1000)}".encode()
    req = urllib.request.Request(f"{url}/write?db=district_putuo&precision=ms", data=body, method="POST")
    urllib.request.urlopen(req, timeout=10).close()
    # A write without rp lands in the default policy "raw", not in autogen.
    in_raw = InfluxQLClient(url).one('SELECT count("occupied") FROM "district_putuo"."raw"."parking"')
    in_autogen = InfluxQLClient(url).one('SELECT count("occupied") FROM "district_putuo"."autogen"."parking"')
    assert in_raw[0].values[0][1] == 1 and in_autogen == []


def write(url: str, db: str, line: str, rp: str | None = None) -> None:
    """One point as the edge writes it (no rp: the database's default policy)."""
    query = f"db={db}&precision=ms" + (f"&rp={rp}" if rp else "")
    req = urllib.request.Request(f"{url}/write?{query}", data=line.encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).close()


def open_alarm(district: str, node: str, ms: int) -> str:
    return (
        f"events,district={district},zone=z1,node={node},kind=leak,event=leak,severity=critical "
        f"state=true,value=1 {ms}"
    )


def open_alarm_nodes(url: str, district: str) -> list[str]:
    proc = urbansense("query", "alarms", "--url", url, "--district", district, "--json")
    assert proc.returncode == 0, proc.stderr
    return sorted(a["node"] for a in json.loads(proc.stdout)["open"])


def test_v1_data_written_before_init_stays_visible(own_influxdb):
    url, now_ms = own_influxdb.url, int(time.time() * 1000)
    own_influxdb.create_database("district_baoshan")  # autogen, and the edge already writing
    write(url, "district_baoshan", open_alarm("baoshan", "l-1", now_ms - 60_000))
    assert open_alarm_nodes(url, "baoshan") == ["l-1"]

    proc = urbansense("db", "init", "--url", url, "--district", "baoshan", "--json")
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout)[0]
    assert (done["policy"], done["action"]) == ("autogen", "retention set on autogen, which holds the data")
    autogen = policies(url, "district_baoshan")["autogen"]
    assert (autogen["duration"], autogen["shardGroupDuration"], autogen["default"]) == (
        "720h0m0s",
        "24h0m0s",
        True,
    )
    # What was there is still answered, and what the edge writes next lands beside it.
    write(url, "district_baoshan", open_alarm("baoshan", "l-2", now_ms))
    assert open_alarm_nodes(url, "baoshan") == ["l-1", "l-2"]
    again = urbansense("db", "init", "--url", url, "--district", "baoshan", "--json")
    assert json.loads(again.stdout)[0]["action"] == "unchanged"


def test_v1_an_earlier_init_that_hid_data_is_undone(own_influxdb):
    url, now_ms = own_influxdb.url, int(time.time() * 1000)
    own_influxdb.create_database("district_hongkou")
    write(url, "district_hongkou", open_alarm("hongkou", "l-3", now_ms))
    # What `db init` used to do: a new, empty default policy in front of the data.
    InfluxQLClient(url).query(
        'CREATE RETENTION POLICY "raw" ON "district_hongkou" DURATION 720h REPLICATION 1 DEFAULT'
    )
    assert open_alarm_nodes(url, "hongkou") == []
    proc = urbansense("db", "init", "--url", url, "--district", "hongkou", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["policy"] == "autogen"
    assert open_alarm_nodes(url, "hongkou") == ["l-3"]


def test_v1_init_that_would_delete_data_refuses(own_influxdb):
    url, now_ms = own_influxdb.url, int(time.time() * 1000)
    own_influxdb.create_database("district_songjiang")
    write(url, "district_songjiang", open_alarm("songjiang", "l-4", now_ms - 60 * DAY * 1000))
    before = policies(url, "district_songjiang")
    proc = urbansense("db", "init", "--url", url, "--district", "yangpu", "--district", "songjiang")
    assert proc.returncode == 1
    line = proc.stderr.strip()
    assert line.startswith(
        "urbansense: district_songjiang holds data in its retention policy autogen in shards that ended on "
    )
    assert ": a duration of 30 days would delete them. Give --raw-days " in line and line.endswith(
        " (or more) to keep them, or export them first"
    )
    # Nothing changed anywhere: not even the database that was fine.
    assert policies(url, "district_songjiang") == before
    assert "district_yangpu" not in {
        row[0] for s in InfluxQLClient(url).one("SHOW DATABASES") for row in s.values
    }
    days = int(line.split("Give --raw-days ")[1].split()[0])
    kept = urbansense(
        "db", "init", "--url", url, "--district", "songjiang", "--raw-days", str(days), "--json"
    )
    assert kept.returncode == 0, kept.stderr
    rows = InfluxQLClient(url).one('SELECT count("state") FROM "events"', db="district_songjiang")
    assert rows[0].values[0][1] == 1


def test_dry_run_changes_nothing(capsys, own_influxdb):
    result = init(capsys, own_influxdb.url, "--district", "qingpu", "--dry-run")
    assert result[0]["action"] == "would be created"
    assert result[0]["request"].startswith('CREATE DATABASE "district_qingpu" WITH DURATION 720h')
    assert "district_qingpu" not in {
        row[0] for s in InfluxQLClient(own_influxdb.url).one("SHOW DATABASES") for row in s.values
    }


def test_default_is_the_16_districts_of_shanghai():
    stores = retention.plan(retention.SHANGHAI_DISTRICTS)
    assert len(stores) == 17 and stores[-1].database == "city"
    assert {s.database for s in stores[:-1]} >= {"district_pudong", "district_xuhui", "district_chongming"}


def test_v2_bucket_and_dbrp_bodies():
    from influxdb_client import InfluxDBClient

    store = retention.plan(["xuhui"])[0]
    with InfluxDBClient(url="http://127.0.0.1:9", token="t") as client:
        bucket = client.api_client.sanitize_for_serialization(retention.bucket_request(store, "org1"))
        dbrp = client.api_client.sanitize_for_serialization(retention.dbrp_request(store, "org1", "b1"))
    assert bucket["name"] == "district_xuhui" and bucket["orgID"] == "org1"
    assert bucket["retentionRules"] == [
        {"type": "expire", "everySeconds": 30 * DAY, "shardGroupDurationSeconds": DAY}
    ]
    assert dbrp == {
        "orgID": "org1",
        "bucketID": "b1",
        "database": "district_xuhui",
        "retention_policy": "raw",
        "default": True,
    }
    city = retention.plan([], rollup_days=730)[0]
    assert (city.database, city.duration_s, city.shard_duration_s) == ("city", 730 * DAY, 7 * DAY)


def test_v2_against_an_endpoint_without_buckets_is_one_line(victoria):
    proc = urbansense(
        "db",
        "init",
        "--api",
        "v2",
        "--url",
        victoria.url,
        "--token",
        "t",
        "--org",
        "city",
        "--district",
        "xuhui",
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and victoria.url in proc.stderr and "HTTP" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["db", "init", "--url", "http://127.0.0.1:9"], "cannot reach http://127.0.0.1:9"),
        (["db", "init", "--api", "v2", "--url", "http://127.0.0.1:9"], "--api v2 needs --token"),
        (
            ["db", "init", "--api", "v2", "--url", "http://127.0.0.1:9", "--token", "t", "--org", "o"],
            "connection refused",
        ),
        (["db", "init", "--url", "http://127.0.0.1:9", "--raw-days", "0"], "at least one day"),
    ],
)
def test_db_errors_are_one_line(args, message):
    proc = urbansense(*args)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
