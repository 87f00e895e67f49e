"""IAQI and AQI categories against values worked by hand from HJ 633-2012, Tables 1 and 2."""

from __future__ import annotations

import pytest

from ops.aqi import air_index, category, iaqi


@pytest.mark.parametrize(
    "pollutant, concentration, expected",
    [
        # Breakpoints map exactly onto the IAQI levels (Table 1).
        ("pm25", 0, 0),
        ("pm25", 35, 50),
        ("pm25", 75, 100),
        ("pm25", 115, 150),
        ("pm25", 150, 200),
        ("pm25", 250, 300),
        ("pm25", 350, 400),
        ("pm25", 500, 500),
        ("pm10", 50, 50),
        ("pm10", 150, 100),
        ("pm10", 250, 150),
        ("pm10", 350, 200),
        ("pm10", 420, 300),
        ("pm10", 500, 400),
        ("pm10", 600, 500),
        # Between breakpoints, worked by hand and rounded up:
        # 90 in 75..115: (150-100)/(115-75)*(90-75)+100 = 118.75 -> 119
        ("pm25", 90, 119),
        # 10 in 0..35: 50/35*10 = 14.29 -> 15
        ("pm25", 10, 15),
        # 180 in 150..250: 100/100*30+200 = 230
        ("pm25", 180, 230),
        # 113.3 in 75..115: 50/40*38.3+100 = 147.875 -> 148
        ("pm25", 113.3, 148),
        # 60 in 50..150: 50/100*10+50 = 55
        ("pm10", 60, 55),
        # 385 in 350..420: 100/70*35+200 = 250
        ("pm10", 385, 250),
        # 35.1 in 35..75: 50/40*0.1+50 = 50.125 -> 51 (rounded up, never down)
        ("pm25", 35.1, 51),
        # Beyond the table: the top of the scale.
        ("pm25", 800, 500),
        ("pm10", 999, 500),
    ],
)
def test_iaqi_matches_hand_computed_values(pollutant, concentration, expected):
    assert iaqi(pollutant, concentration) == expected


@pytest.mark.parametrize(
    "aqi, level, name",
    [
        (0, "I", "excellent"),
        (50, "I", "excellent"),
        (51, "II", "good"),
        (100, "II", "good"),
        (101, "III", "lightly polluted"),
        (150, "III", "lightly polluted"),
        (151, "IV", "moderately polluted"),
        (200, "IV", "moderately polluted"),
        (201, "V", "heavily polluted"),
        (300, "V", "heavily polluted"),
        (301, "VI", "severely polluted"),
        (500, "VI", "severely polluted"),
    ],
)
def test_six_categories_of_table_2(aqi, level, name):
    cat = category(aqi)
    assert (cat.level, cat.name) == (level, name)


def test_aqi_is_the_largest_iaqi_and_names_the_primary_pollutant():
    index = air_index({"pm25": 90.0, "pm10": 150.0})  # IAQI 119 and 100
    assert (index.aqi, index.primary, index.category.level) == (119, "pm25", "III")
    index = air_index({"pm25": 30.0, "pm10": 60.0})  # IAQI 43 and 55
    assert (index.aqi, index.primary) == (55, "pm10")


def test_no_primary_pollutant_at_or_below_50():
    index = air_index({"pm25": 35.0, "pm10": 50.0})
    assert (index.aqi, index.primary) == (50, None)


def test_equal_iaqi_names_both_pollutants():
    assert air_index({"pm25": 75.0, "pm10": 150.0}).primary == "pm25,pm10"


def test_missing_pollutants_are_left_out():
    assert air_index({"pm25": None, "pm10": 250.0}).aqi == 150
    assert air_index({"pm25": None, "pm10": None}) is None


def test_negative_concentration_is_refused():
    with pytest.raises(ValueError):
        iaqi("pm25", -1.0)
