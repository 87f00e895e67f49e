"""The edge's processes set CPython's cyclic collector for their work (edge.collector):
what they made while starting is frozen, young collections come far less often. Cycles
made afterwards must still be collected on their own, and the settings are those the
module names. Run in a process of its own: the test process keeps its collector."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = r"""
import gc, weakref
from edge import collector

kept = [object() for _ in range(1000)]  # made at start: frozen, out of the collector's sight
collector.settle()
assert gc.get_freeze_count() > len(kept), gc.get_freeze_count()
assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, collector.MIDDLE_THRESHOLD, collector.OLD_THRESHOLD)

class Node:
    pass

freed = []
for i in range(3 * collector.YOUNG_THRESHOLD):
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: reference counting never frees it
    if i % 1000 == 0:
        weakref.finalize(a, freed.append, i)
    del a, b
# No gc.collect() here: the collector must have run by itself.
print(len(freed))
"""


def test_cycles_made_after_settling_are_still_collected_by_themselves():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # 150 finalizers were set on cycles; the young collections (one per YOUNG_THRESHOLD
    # allocations) have freed all but those of the last stretch.
    assert int(out.stdout) >= 100, out.stdout
