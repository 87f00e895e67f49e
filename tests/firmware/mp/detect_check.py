# Runs under MicroPython: one scenario per stdin line, {"kind", "calibration", "samples"},
# through node.detect.Detection with the default thresholds; prints the events (one JSON
# list per scenario) and the final detected fields.
import sys
import json
from protocols.thresholds import THRESHOLDS, THRESHOLD_HYSTERESIS
from node import detect
from node.detect import Detection

# The node keeps its own copy of the protocol's hysteresis (see node/detect.py).
if detect.THRESHOLD_HYSTERESIS != THRESHOLD_HYSTERESIS:
    raise SystemExit("node.detect.THRESHOLD_HYSTERESIS differs from the protocol's")

for line in sys.stdin:
    sc = json.loads(line)
    det = Detection(sc["kind"], dict(THRESHOLDS[sc["kind"]]), sc.get("calibration", {}), {})
    events = []
    last = None
    for i, fields in enumerate(sc["samples"]):
        if "_acc" in fields:
            fields["_acc"] = tuple(fields["_acc"])
        for name, state, value in det.update(fields):
            events.append([i, name, state])
        last = fields
    print(json.dumps({"events": events, "last": last}))
