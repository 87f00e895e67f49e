# Runs under MicroPython with the node's bundle on the path: reads every receipt vector of
# protocols/vectors with the node's own reader (node/receipts.py) and prints one JSON line
# per case, {"name", "result": {"ts", "got"}} or {"name", "refused": true}, for the host
# test to compare with the vectors' expectations.
#   usage: receipt_check.py VECTORS_DIR
import json
import sys

from node.receipts import read

with open(sys.argv[1] + "/cases.json") as f:
    cases = json.load(f)["cases"]
for name in sorted(cases):
    case = cases[name]
    if case.get("decoder") != "receipt":
        continue
    with open(sys.argv[1] + "/payloads/" + name, "rb") as f:
        payload = f.read()
    got = read(payload, case["topic"].split("/")[4])
    if got is None:
        print(json.dumps({"name": name, "refused": True}))
    else:
        print(json.dumps({"name": name, "result": {"ts": got[0], "got": got[1]}}))
