"""The cyclic garbage collector, set for a process that allocates a lot and keeps little.

The edge's processes make a few dozen container objects per message (the message, its
decoded dict, its records, the line, tuples for the indexes) and nearly all of them are
freed by reference counting as soon as a group is committed; CPython's collector does not
know that and, at its defaults (a young collection every 700 allocations), walked the
live groups again and again and promoted them to the old generation, whose full
collections then walked the whole heap: every module, every pydantic schema. Measured
with gc.callbacks in a 20,000-message backlog drain (bench/edge_throughput.py): 0.70 s
of the commit process's 3.1 s of CPU, with full collections of about 95 ms each (a pause
the events path waits through too).

So, once a process is set up: what exists then (modules, schemas, the configuration) is
moved out of the collector's sight for good (gc.freeze), and a young collection waits for
YOUNG_THRESHOLD net allocations. Cycles are still collected, later: the edge makes few
(an exception's traceback, a closed connection), and what the collector frees stays
bounded by the threshold.
"""

from __future__ import annotations

import gc

# Net allocations of tracked objects between young collections (CPython: 700), then
# young collections per middle one and middle ones per full one (CPython: 10, 10).
YOUNG_THRESHOLD = 50_000
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100


def settle() -> None:
    """Call once a process has made what it keeps for its whole life."""
    gc.collect()  # what the set-up left as garbage goes now, not frozen with the rest
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
