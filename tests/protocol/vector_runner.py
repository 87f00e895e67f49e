# Decode every golden vector and print one JSON line per case: {"name", "reason"} for a
# rejected message, {"name", "result"} for an accepted one. Plain Python: the protocol
# tests run this same file under CPython and under MicroPython and compare the outputs
# with the vectors' expectations and with each other.
#   usage: runner.py VECTORS_DIR
import json
import sys

from protocols.codec import decode_command, decode_receipt
from protocols.decoder import decode
from protocols.errors import ProtocolError


def run(vectors_dir, out):
    with open(vectors_dir + "/cases.json") as f:
        doc = json.load(f)
    now_ms = doc["now_ms"]
    cases = doc["cases"]
    for name in sorted(cases):
        case = cases[name]
        with open(vectors_dir + "/payloads/" + name, "rb") as f:
            payload = f.read()
        try:
            if case.get("decoder") == "command":
                result = decode_command(payload)
            elif case.get("decoder") == "receipt":
                # The node reading its own receipt topic: its id is the topic's.
                ts, got = decode_receipt(payload, case["topic"].split("/")[4])
                result = {"ts": ts, "got": got}
            else:
                result = decode(case["topic"], payload, now_ms)
            line = {"name": name, "result": result}
        except ProtocolError as e:
            line = {"name": name, "reason": e.reason}
        out.write(json.dumps(line))
        out.write("\n")


if __name__ == "__main__":
    run(sys.argv[1], sys.stdout)
