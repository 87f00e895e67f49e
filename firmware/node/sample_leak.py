# What a leak node samples: the conductance of its probe, on an ADC.
# One module per kind: a node loads only its own.
from drivers.analog import probe


def parts(cfg, bus):
    """[(name, sensor, to_fields)] for node/sensors.py's Sampler."""
    return [("leak", probe(bus, "leak", cfg["calibration"]), lambda v: {"conductance": v})]
