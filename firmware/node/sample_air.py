# What an air-quality node samples: a particulate sensor (PMS5003, or SDS011 with
# "pm_sensor": "sds011"), CO2 (MH-Z19B), temperature and humidity (SHT3x), NO2 (an
# electrochemical cell on an ADC). One module per kind: a node loads only its own.
from drivers.analog import probe
from drivers.mhz19 import MHZ19
from drivers.sht3x import SHT3x


def parts(cfg, bus):
    """[(name, sensor, to_fields)] for node/sensors.py's Sampler."""
    if cfg.get("pm_sensor") == "sds011":
        from drivers.sds011 import SDS011
        pm = ("sds011", SDS011(bus.uart("pm")), lambda v: {"pm25": v[0], "pm10": v[1]})
    else:
        from drivers.pms5003 import PMS5003
        pm = ("pms5003", PMS5003(bus.uart("pm")),
              lambda v: {"pm1": v[0], "pm25": v[1], "pm10": v[2]})
    return [pm,
            ("mhz19", MHZ19(bus.uart("co2")), lambda v: {"co2": v}),
            ("sht3x", SHT3x(bus.i2c()),
             lambda v: {"temperature_c": v[0], "humidity_pct": v[1]}),
            ("no2", probe(bus, "no2", cfg["calibration"]), lambda v: {"no2": v})]
