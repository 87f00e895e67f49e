"""The node's own receipt reader (firmware/node/receipts.py `read`, json alone) under
MicroPython, compiled as on a board, against every receipt vector of protocols/vectors:
it accepts exactly the receipts protocols.codec.decode_receipt accepts, with the same
(ts, got), and refuses every one the vectors refuse."""

from __future__ import annotations

import json
from pathlib import Path

from hil import micropython

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "protocols" / "vectors"
SCRIPT = Path(__file__).parent / "mp" / "receipt_check.py"


def test_node_reads_receipts_as_the_vectors_say(node_path):
    cases = {n: c for n, c in json.loads((VECTORS / "cases.json").read_text())["cases"].items()}
    receipts = {n: c for n, c in cases.items() if c.get("decoder") == "receipt"}
    # The vectors file is large: the heap is for it, not for the reader.
    proc = micropython.run([str(SCRIPT), str(VECTORS)], heap="1m", micropypath=node_path, cwd=SCRIPT.parent)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    seen = {}
    for line in proc.stdout.decode().splitlines():
        out = json.loads(line)
        seen[out["name"]] = out
    assert set(seen) == set(receipts)
    valid = [n for n, c in receipts.items() if "expect" in c]
    assert valid and len(valid) < len(receipts)  # both kinds are exercised
    for name, case in receipts.items():
        if "expect" in case:
            assert seen[name].get("result") == case["expect"], (name, seen[name])
        else:
            assert seen[name].get("refused") is True, (name, case["reason"], seen[name])
