# The sampler: the drivers of the node's kind (node/sample_<kind>.py) on the buses the HAL
# hands out -> a dict of catalog fields (plus `_acc`, the raw accelerometer vector that
# detection turns into tilt).
# A sensor that fails is left out of this reading with one console line; the rest go on.
# take_reading() is the node's sampling step: this module and all it loads are the
# sampling phase, which a duty-cycled node drops before it connects (Node.release_sensing).
import sys

import files
from node import COUNTERS_FILE


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
    if queue.push(obj):
        counters = node.counters
        counters["dropped"] += 1
        files.write_json(COUNTERS_FILE, counters)
        if counters["dropped"] % 50 == 1:
            node.log("error queue full: dropped=%d" % counters["dropped"])


class Sampler:
    def __init__(self, kind, cfg, hal, log):
        self.kind = kind
        self.hal = hal
        # The buses as the HAL hands them to drivers (the sim loads its world with them).
        self.bus = hal.sensors()
        self.log = log
        name = "sample_" + kind      # node/sample_<kind>.py: what this kind samples
        __import__("node." + name)
        self.parts = getattr(sys.modules["node"], name).parts(cfg, self.bus)

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
