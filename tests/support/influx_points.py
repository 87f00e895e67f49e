"""Counting what reached InfluxDB. Both answer "nothing yet" while the database or the
measurement does not exist, so a test can wait on them from the start."""

from __future__ import annotations


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
