# What a parking node samples: a magnetometer (QMC5883L) under the bay, or with
# "sensor": "distance" an ultrasonic ranger (HC-SR04) looking up at the car's underside.
# One module per kind: a node loads only its own.


def parts(cfg, bus):
    """[(name, sensor, to_fields)] for node/sensors.py's Sampler."""
    if cfg.get("sensor") == "distance":
        from drivers.hcsr04 import HCSR04
        return [("hcsr04", HCSR04(bus.ranger("distance")), lambda v: {"distance_cm": v})]
    from drivers.qmc5883l import QMC5883L
    return [("qmc5883l", QMC5883L(bus.i2c()),
             lambda v: {"mag_x": v[0], "mag_y": v[1], "mag_z": v[2]})]
