# Default alarm thresholds and reporting intervals, with the source of each default.
# The part of the sensor catalog that nodes need at run time, kept apart from the field
# table (catalog.py) because a node pays heap for every module it imports.
# Plain Python for CPython and MicroPython.

# Default alarm thresholds: kind -> {threshold name: value}. A node raises the event when
# the reading crosses the value and clears it after the reading falls back below the value
# less the hysteresis in THRESHOLD_HYSTERESIS. All of them can be changed over `cmd`.
THRESHOLDS = {
    "parking": {
        # Rise of the magnetic field magnitude over the adaptive baseline that means a car.
        # Earth's field is ~50 uT; a car body above the sensor shifts it by tens of uT
        # (Honeywell application note AN218, "Vehicle Detection Using AMR Sensors").
        "occupied_delta_ut": 15.0,
        "battery_low_v": 3.3,
    },
    "air": {
        # GB 3095-2012 (China ambient air quality standard), Grade II 24-hour limit;
        # also the IAQI 100 breakpoint of HJ 633-2012.
        "pm25": 75.0,
        # GB 3095-2012 Grade II 24-hour limit for PM10.
        "pm10": 150.0,
        # GB/T 18883-2022 (indoor air quality) limit: 0.10 % = 1000 ppm.
        "co2": 1000.0,
        # GB 3095-2012 Grade II 1-hour limit 200 ug/m3 = 106 ppb at 25 degC.
        "no2": 106.0,
        "battery_low_v": 3.3,
    },
    "leak": {
        # Conductance (raw ADC) above which a probe reads wet; calibrate per probe.
        # The urbansense probe reads < 200 dry and > 2000 in tap water.
        "wet_conductance": 1000.0,
        "battery_low_v": 3.3,
    },
    "manhole": {
        # Tilt relative to the installed angle: a seated cover rocks by < 5 deg under
        # traffic; a lifted or displaced one exceeds 15 deg. 10 deg is between the two.
        "tilt_deg": 10.0,
        # 10 % of the lower explosive limit: OSHA 29 CFR 1910.146 calls an atmosphere
        # with flammable gas above 10 % LFL hazardous for confined-space entry.
        "ch4_lel": 10.0,
        # NIOSH recommended exposure limit: ceiling 10 ppm (10 minutes).
        "h2s_ppm": 10.0,
        # Depends on the depth of each well: the default only catches a nearly full one.
        "water_level_cm": 150.0,
        # Li-SOCl2 cells hold ~3.6 V for most of their life; a sustained fall below 3.3 V
        # under load marks their last few percent (cell makers' discharge curves).
        "battery_low_v": 3.3,
    },
}

# Fraction of the threshold a reading must fall below before the event clears, so that a
# value hovering at the threshold does not flap.
THRESHOLD_HYSTERESIS = 0.1

# Reporting interval bounds and defaults (seconds).
INTERVAL_MIN_S = 5
INTERVAL_MAX_S = 86400
DEFAULT_INTERVAL_S = {"parking": 60, "air": 60, "leak": 300, "manhole": 300}
