"""China's air quality index for particulate matter, per HJ 633-2012 (Technical Regulation
on Ambient Air Quality Index, Ministry of Environmental Protection of China).

The individual AQI (IAQI) of a pollutant is piecewise linear between the breakpoints of
the standard's Table 1:

    IAQI = (IAQI_hi - IAQI_lo) / (BP_hi - BP_lo) * (C - BP_lo) + IAQI_lo

and is rounded up to a whole number (the standard: results are rounded up, no decimals).
The AQI is the largest IAQI; the pollutant giving it is the primary pollutant when the
AQI is above 50. Table 1 gives PM2.5 and PM10 breakpoints for 24-hour means only; the
hourly real-time figures published in China apply those breakpoints to hourly means,
which is what the hourly answers here do. Concentrations above the last breakpoint are
beyond the table: their IAQI is reported as 500 (the top of the scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# IAQI levels and the concentration breakpoints (ug/m3, 24-hour mean) of Table 1.
IAQI_LEVELS = (0, 50, 100, 150, 200, 300, 400, 500)
BREAKPOINTS = {
    "pm25": (0, 35, 75, 115, 150, 250, 350, 500),
    "pm10": (0, 50, 150, 250, 350, 420, 500, 600),
}


@dataclass(frozen=True)
class Category:
    """One of the six AQI categories of the standard's Table 2."""

    level: str  # I .. VI
    name: str  # the English name
    name_zh: str  # the name in the standard
    low: int  # AQI range, inclusive
    high: int
    color: str  # the colour the standard assigns (RGB)


CATEGORIES = (
    Category("I", "excellent", "优", 0, 50, "#00e400"),
    Category("II", "good", "良", 51, 100, "#ffff00"),
    Category("III", "lightly polluted", "轻度污染", 101, 150, "#ff7e00"),
    Category("IV", "moderately polluted", "中度污染", 151, 200, "#ff0000"),
    Category("V", "heavily polluted", "重度污染", 201, 300, "#99004c"),
    Category("VI", "severely polluted", "严重污染", 301, 500, "#7e0023"),
)


def iaqi(pollutant: str, concentration: float) -> int:
    """The individual AQI of a PM2.5 (`pm25`) or PM10 (`pm10`) concentration in ug/m3."""
    points = BREAKPOINTS[pollutant]
    if concentration < 0 or math.isnan(concentration):
        raise ValueError(f"{pollutant} concentration must be a number >= 0, not {concentration}")
    if concentration >= points[-1]:
        return IAQI_LEVELS[-1]
    for i in range(1, len(points)):
        if concentration <= points[i]:
            lo_c, hi_c = points[i - 1], points[i]
            lo_i, hi_i = IAQI_LEVELS[i - 1], IAQI_LEVELS[i]
            value = (hi_i - lo_i) / (hi_c - lo_c) * (concentration - lo_c) + lo_i
            # Round up, as the standard asks; the epsilon keeps 50.000000001 (float noise) at 50.
            return math.ceil(value - 1e-9)
    raise AssertionError("unreachable: the last breakpoint was checked above")


def category(aqi: int) -> Category:
    """The category of an AQI value."""
    for cat in CATEGORIES:
        if aqi <= cat.high:
            return cat
    return CATEGORIES[-1]


@dataclass(frozen=True)
class AirIndex:
    aqi: int
    category: Category
    primary: str | None  # pollutant giving the AQI, None when the AQI is 50 or less
    iaqi: dict[str, int]


def air_index(concentrations: dict[str, float | None]) -> AirIndex | None:
    """AQI from the pollutants measured (None values are left out); None if none was."""
    parts = {p: iaqi(p, c) for p, c in concentrations.items() if c is not None}
    if not parts:
        return None
    aqi = max(parts.values())
    primary = None
    if aqi > 50:
        primary = ",".join(p for p in BREAKPOINTS if parts.get(p) == aqi)
    return AirIndex(aqi, category(aqi), primary, parts)
