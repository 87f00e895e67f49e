# The sensor catalog: every kind, every field with its type, unit and valid range,
# the events a kind may raise, and default alarm thresholds with their sources.
# The edge builds its validation models and InfluxDB field types from this table;
# the firmware reads its default thresholds from it. Plain Python for both interpreters.
#
# A field is ("float" | "bool", unit, low, high). Ranges are the physical span of the
# parts the firmware drives (datasheet full scale), so an out-of-range value means a
# broken sensor or a forged message, never a real but extreme reading.

FLOAT = "float"
BOOL = "bool"

# Fields every kind may carry.
COMMON_FIELDS = {
    "battery_v": (FLOAT, "V", 0.0, 6.0),  # Li-SOCl2 primary 3.6 V, or 5 V mains supply
    "rssi": (FLOAT, "dBm", -130.0, 0.0),  # Wi-Fi / NB-IoT received signal strength
    "uptime_s": (FLOAT, "s", 0.0, 4294967295.0),  # seconds since boot (32-bit counter)
}

KIND_FIELDS = {
    "parking": {
        "occupied": (BOOL, "", None, None),
        "mag_x": (FLOAT, "uT", -1000.0, 1000.0),  # QMC5883L/HMC5883L full scale is +-800 uT
        "mag_y": (FLOAT, "uT", -1000.0, 1000.0),
        "mag_z": (FLOAT, "uT", -1000.0, 1000.0),
        "distance_cm": (FLOAT, "cm", 0.0, 1000.0),  # ultrasonic / time-of-flight alternative
        "confidence": (FLOAT, "", 0.0, 1.0),
    },
    "air": {
        "pm1": (FLOAT, "ug/m3", 0.0, 1000.0),  # PMS5003 / SDS011 report up to 999.9
        "pm25": (FLOAT, "ug/m3", 0.0, 1000.0),
        "pm10": (FLOAT, "ug/m3", 0.0, 1000.0),
        "co2": (FLOAT, "ppm", 0.0, 40000.0),  # SCD4x full scale 40000 ppm
        "no2": (FLOAT, "ppb", 0.0, 10000.0),
        "temperature_c": (FLOAT, "degC", -40.0, 85.0),
        "humidity_pct": (FLOAT, "%RH", 0.0, 100.0),
    },
    "leak": {
        "wet": (BOOL, "", None, None),
        "conductance": (FLOAT, "raw", 0.0, 65535.0),  # 16-bit ADC reading of the probe
    },
    "manhole": {
        "tilt_deg": (FLOAT, "deg", 0.0, 180.0),  # relative to the installed angle
        "cover_open": (BOOL, "", None, None),
        "water_level_cm": (FLOAT, "cm", 0.0, 1000.0),
        "ch4_lel": (FLOAT, "%LEL", 0.0, 100.0),
        "h2s_ppm": (FLOAT, "ppm", 0.0, 500.0),
    },
}

KINDS = ("parking", "air", "leak", "manhole")

INFO = "info"
WARNING = "warning"
CRITICAL = "critical"
SEVERITIES = (INFO, WARNING, CRITICAL)

# Events: name -> (kinds that may raise it, default severity). "*" means every kind.
# An event's state is true while the condition holds (raised) and false when it clears;
# for "occupancy" true means occupied and false vacant.
EVENTS = {
    "occupancy": (("parking",), INFO),
    "leak": (("leak",), CRITICAL),
    "cover-open": (("manhole",), CRITICAL),
    "tilt": (("manhole",), WARNING),
    "ch4": (("manhole",), CRITICAL),
    "h2s": (("manhole",), CRITICAL),
    "water-level": (("manhole",), WARNING),
    "pm25": (("air",), WARNING),
    "pm10": (("air",), WARNING),
    "co2": (("air",), WARNING),
    "no2": (("air",), WARNING),
    "battery-low": ("*", WARNING),
}


def fields_of(kind):
    """All fields a kind may carry: its own plus the common ones."""
    own = KIND_FIELDS.get(kind)
    if own is None:
        return None
    out = dict(COMMON_FIELDS)
    out.update(own)
    return out


def events_of(kind):
    out = []
    for name in EVENTS:
        kinds = EVENTS[name][0]
        if kinds == "*" or kind in kinds:
            out.append(name)
    return out
