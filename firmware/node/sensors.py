# One sampler per kind: the drivers on the buses the HAL hands out -> a dict of catalog
# fields (plus `_acc`, the raw accelerometer vector that detection turns into tilt).
# A sensor that fails is left out of this reading with one console line; the rest go on.
# take_reading() is the node's sampling step: this module and all it loads are the
# sampling phase, which a duty-cycled node drops before it connects (Node.release_sensing).
import json

from node import files
from node.app import COUNTERS_FILE


def take_reading(node):
    """Sample every sensor, run detection, queue the events and the reading."""
    if node.sampler is None:
        from node.detect import Detection
        cfg = node.cfg
        node.detect = Detection(node.kind, cfg["thresholds"], cfg["calibration"],
                                node.mem["det"])
        node.sampler = Sampler(node.kind, cfg, node.hal, node.log)
    fields = node.sampler.read()
    events = node.detect.update(fields)
    fields["uptime_s"] = node.uptime_s()
    for name, state, value in events:
        obj = {"boot": node.boot, "seq": _next_seq(node), "event": name, "state": state,
               "fields": fields}
        if value is not None:
            obj["value"] = value
        _enqueue(node, node.ev, _stamp(node.hal, obj))
        node.log("event %s %s %s" % (name, state, value))
    _enqueue(node, node.tm, _stamp(node.hal, {"boot": node.boot, "seq": _next_seq(node),
                                              "fields": fields}))


def _stamp(hal, obj):
    epoch = hal.epoch_ms()
    if epoch is not None:
        obj["ts"] = epoch
    else:
        obj["l"] = hal.local_ms()   # local clock; age_ms is computed when sent
    return obj


def _next_seq(node):
    seq = node.seq
    node.seq += 1
    return seq


def _enqueue(node, queue, obj):
    node.hal.note_taken(obj["boot"], obj["seq"])
    if queue.push(json.dumps(obj).encode()):
        counters = node.counters
        counters["dropped"] += 1
        files.write_json(COUNTERS_FILE, counters)
        if counters["dropped"] % 50 == 1:
            node.log("error queue full: dropped=%d" % counters["dropped"])


def _analog(bus, name, cal):
    # Imported by the kinds that have ADC sensors only (every module costs heap).
    from drivers.analog import AnalogSensor, calibration
    return AnalogSensor(bus.adc(name), calibration(name, cal))


class Sampler:
    def __init__(self, kind, cfg, hal, log):
        self.kind = kind
        self.hal = hal
        # The buses as the HAL hands them to drivers (the sim loads its world with them).
        self.bus = bus = hal.sensors()
        self.log = log
        cal = cfg["calibration"]
        self.parts = parts = []   # (name, sensor, to_fields)
        if kind == "air":
            if cfg.get("pm_sensor") == "sds011":
                from drivers.sds011 import SDS011
                parts.append(("sds011", SDS011(bus.uart("pm")),
                              lambda v: {"pm25": v[0], "pm10": v[1]}))
            else:
                from drivers.pms5003 import PMS5003
                parts.append(("pms5003", PMS5003(bus.uart("pm")),
                              lambda v: {"pm1": v[0], "pm25": v[1], "pm10": v[2]}))
            from drivers.mhz19 import MHZ19
            from drivers.sht3x import SHT3x
            parts.append(("mhz19", MHZ19(bus.uart("co2")), lambda v: {"co2": v}))
            parts.append(("sht3x", SHT3x(bus.i2c()),
                          lambda v: {"temperature_c": v[0], "humidity_pct": v[1]}))
            parts.append(("no2", _analog(bus, "no2", cal),
                          lambda v: {"no2": v}))
        elif kind == "parking":
            if cfg.get("sensor") == "distance":
                from drivers.hcsr04 import HCSR04
                parts.append(("hcsr04", HCSR04(bus.ranger("distance")),
                              lambda v: {"distance_cm": v}))
            else:
                from drivers.qmc5883l import QMC5883L
                parts.append(("qmc5883l", QMC5883L(bus.i2c()),
                              lambda v: {"mag_x": v[0], "mag_y": v[1], "mag_z": v[2]}))
        elif kind == "leak":
            parts.append(("leak", _analog(bus, "leak", cal),
                          lambda v: {"conductance": v}))
        else:
            from drivers.mpu6050 import MPU6050
            parts.append(("mpu6050", MPU6050(bus.i2c()), lambda v: {"_acc": v}))
            parts.append(("ch4", _analog(bus, "ch4", cal),
                          lambda v: {"ch4_lel": v}))
            parts.append(("h2s", _analog(bus, "h2s", cal),
                          lambda v: {"h2s_ppm": v}))
            parts.append(("level", _analog(bus, "level", cal),
                          lambda v: {"water_level_cm": v}))
            cover = bus.pin("cover")
            # Reed switch on the frame: the magnet in the cover holds it closed (0).
            parts.append(("cover", cover, lambda v: {"cover_open": bool(v)}))

    def read(self):
        bus = self.bus
        bus.before_sample()
        fields = {}
        for name, sensor, to_fields in self.parts:
            try:
                value = sensor.value() if name == "cover" else sensor.read()
            except Exception as err:   # I2C NACK, UART noise, bad checksum: skip this one
                self.log("error sensor %s: %r" % (name, err))
                continue
            if value is None:
                continue
            for key, v in to_fields(value).items():
                fields[key] = round(v, 2) if type(v) is float else v
        fields["battery_v"] = round(bus.battery_v(), 2)
        rssi = bus.rssi()
        if rssi is not None:
            fields["rssi"] = rssi
        override = getattr(self.hal, "override", None)
        if override is not None:
            override(fields)   # HIL stimuli on a real board (the sim's world does its own)
        return fields
