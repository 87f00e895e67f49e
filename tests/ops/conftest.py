"""The known city, written once per session into the session's real InfluxDB 1.6."""

from __future__ import annotations

import pytest

from tests.ops import city as known


@pytest.fixture(scope="session")
def known_city(_influxdb_session) -> known.City:
    t0 = known.last_full_hour_ms() - known.HOURS * known.HOUR_MS
    return known.populate(_influxdb_session.url, t0, _influxdb_session.create_database)


@pytest.fixture
def city(known_city, influxdb) -> known.City:
    """The known city; asking through `influxdb` attaches its log to a failing test."""
    return known_city
