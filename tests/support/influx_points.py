"""Counting what reached InfluxDB. Both answer "nothing yet" while the database or the
measurement does not exist, so a test can wait on them from the start."""

from __future__ import annotations

import time
import urllib.request

from tests.support.waiting import wait_for


def write_lines(influx, db: str, body: bytes) -> None:
    """Write line protocol (ms precision) straight to InfluxDB, as another writer would:
    e.g. a field with another type than the edge sends."""
    request = urllib.request.Request(f"{influx.url}/write?db={db}&precision=ms", data=body, method="POST")
    urllib.request.urlopen(request, timeout=10).read()


def influx_count(influx, db: str, measurement: str = "air", field: str = "pm25") -> int:
    try:
        return influx.count(measurement, db, field)
    except Exception:
        return -1


def uptimes(influx, db: str, measurement: str = "air") -> list[float]:
    try:
        series = influx.query(f'SELECT "uptime_s" FROM "{measurement}"', db=db)
    except Exception:
        return []
    return sorted(v[1] for s in series for v in s["values"])


def assert_exactly(influx, db: str, n: int, timeout: float = 60.0) -> None:
    """The database holds exactly the readings 0..n-1 of counted_readings (by their
    `uptime_s`), each once."""
    wait_for(lambda: len(uptimes(influx, db)) >= n, timeout, what=f"{n} points in {db}")
    time.sleep(1.0)  # anything still in flight would show up as an extra point now
    got = uptimes(influx, db)
    missing = sorted(set(range(n)) - set(int(v) for v in got))
    assert not missing and len(got) == n, (
        f"{len(got)} points, missing {missing[:20]}, doubled {len(got) - len(set(got))}"
    )
