"""Time windows and places as the query commands read them."""

from __future__ import annotations

import pytest

from ops.scope import Place, ScopeError, Window, parse_duration_ms

NOW = 1_795_320_000_000  # 2026-11-22T04:00:00Z


@pytest.mark.parametrize(
    "text, ms",
    [
        ("90s", 90_000),
        ("30m", 1_800_000),
        ("24h", 86_400_000),
        ("7d", 604_800_000),
        ("2w", 1_209_600_000),
        ("1.5h", 5_400_000),
    ],
)
def test_durations(text, ms):
    assert parse_duration_ms(text) == ms


def test_since_is_counted_back_from_until():
    window = Window.parse("2h", "2026-11-22T04:00:00Z", now=NOW + 999_999)
    assert (window.start_ms, window.end_ms) == (NOW - 7_200_000, NOW)


def test_iso_times_without_zone_are_utc():
    window = Window.parse("2026-11-22T03:00:00", "2026-11-22T04:00:00+00:00", now=NOW)
    assert (window.start_ms, window.end_ms, window.hours) == (NOW - 3_600_000, NOW, 1.0)


def test_until_defaults_to_now():
    assert Window.parse("24h", now=NOW) == Window(NOW - 86_400_000, NOW)


@pytest.mark.parametrize(
    "since, until",
    [
        ("yesterday", None),
        ("24x", None),
        ("1h", "2026-13-01"),
        ("2026-11-22T05:00:00Z", "2026-11-22T04:00:00Z"),
    ],
)
def test_bad_times_are_refused(since, until):
    with pytest.raises(ScopeError):
        Window.parse(since, until, now=NOW)


def test_place_filters_are_quoted():
    where = Place(("xuhui", "min'hang"), ("caohejing",)).where()
    assert where == (
        " AND (\"district\" = 'xuhui' OR \"district\" = 'min\\'hang') AND (\"zone\" = 'caohejing')"
    )
    assert Place().where() == ""
