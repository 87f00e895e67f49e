"""What the city wrote into InfluxDB: points per district and kind, and what the city
level holds. Read through InfluxQL, the same way operations staff would."""

from __future__ import annotations

from dataclasses import dataclass

from hil.services import InfluxDBServer, ServiceError
from protocols.catalog import KINDS
from protocols.names import EVENTS, NODE_HEALTH, rollup_measurement


@dataclass(frozen=True)
class Landed:
    database: str
    measurement: str
    points: int
    nodes: int


def count_points(influx: InfluxDBServer, db: str, measurement: str) -> Landed:
    """Points and nodes of one measurement. COUNT(*) counts per field; a node's readings
    all carry the same fields, so per node the largest field count is its number of points
    (and the query stays cheap however long the city ran)."""
    try:
        series = influx.query(f'SELECT COUNT(*) FROM "{measurement}" GROUP BY "node"', db=db)
    except ServiceError:
        series = []
    points = 0
    for s in series:
        row = s["values"][0]
        points += max((v for v in row[1:] if isinstance(v, (int, float))), default=0)
    return Landed(db, measurement, int(points), len(series))


def district_landing(influx: InfluxDBServer, districts: list[str]) -> list[Landed]:
    return [count_points(influx, f"district_{d}", kind) for d in districts for kind in KINDS]


def city_landing(influx: InfluxDBServer) -> list[Landed]:
    names = [EVENTS, NODE_HEALTH] + [rollup_measurement(k) for k in KINDS]
    return [count_points(influx, "city", m) for m in names]


def example_queries(districts: list[str]) -> list[tuple[str, str]]:
    """(database, InfluxQL) a user can run to see what landed."""
    first = districts[0]
    return [
        (f"district_{first}", 'SELECT COUNT(*) FROM "air" GROUP BY "zone"'),
        (f"district_{first}", 'SELECT mean("pm25") FROM "air" WHERE time > now() - 1h GROUP BY "zone"'),
        ("city", f'SELECT last("state") FROM "{EVENTS}" GROUP BY "node", "event"'),
        ("city", f'SELECT last("online") FROM "{NODE_HEALTH}" GROUP BY "district", "zone", "node"'),
    ]
