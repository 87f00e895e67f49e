# What a manhole node samples: the cover's tilt (MPU-6050), CH4 and H2S (ADC gas
# sensors), the water level (a pressure probe on an ADC), and the reed switch on the
# frame. One module per kind: a node loads only its own.
from drivers.analog import probe
from drivers.mpu6050 import MPU6050


def parts(cfg, bus):
    """[(name, sensor, to_fields)] for node/sensors.py's Sampler."""
    cal = cfg["calibration"]
    return [("mpu6050", MPU6050(bus.i2c()), lambda v: {"_acc": v}),
            ("ch4", probe(bus, "ch4", cal), lambda v: {"ch4_lel": v}),
            ("h2s", probe(bus, "h2s", cal), lambda v: {"h2s_ppm": v}),
            ("level", probe(bus, "level", cal), lambda v: {"water_level_cm": v}),
            # Reed switch on the frame: the magnet in the cover holds it closed (0).
            ("cover", bus.pin("cover"), lambda v: {"cover_open": bool(v)})]
