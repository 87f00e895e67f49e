"""Expected answers, worked out from the stimuli tables of tests/ops/city.py."""

from __future__ import annotations

from tests.ops import city as known


def parking_zone_nodes(zone: str) -> list[str]:
    return [n for n, (z, _) in known.PARKING.items() if z == zone]


def occupancy_pct(zone: str, hour: int) -> float:
    """Share of the zone's parking readings in that hour that reported occupied, in %."""
    nodes = parking_zone_nodes(zone)
    minutes = [m for m in known.parking_reading_minutes() if m // 60 == hour]
    readings = [known.occupied_at(n, m) for n in nodes for m in minutes]
    return round(100 * sum(readings) / len(readings), 1)


def zone_air_mean(zone: str, hour: int, pollutant: str) -> float:
    column = 1 if pollutant == "pm25" else 2
    nodes = [n for n, (z, *_) in known.AIR.items() if z == zone]
    return sum(known.AIR[n][column][hour] for n in nodes) / len(nodes)
