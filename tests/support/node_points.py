"""Counting a virtual node's readings and events in InfluxDB against what the node took.

A node's identities (boot, seq) are in its taken.log (hil/sim.py SimNode.taken); InfluxDB
holds one point per reading (measurement = kind) or event (`events`), each under the
node's tag. Exact means: as many points as identities taken, once the node's queue is
empty and it is asleep."""

from __future__ import annotations

from hil.sim import SimNode
from tests.support.waiting import eventually


def node_points(influx, db: str, node: SimNode) -> int:
    total = 0
    for measurement in (node.config["kind"], "events"):
        try:
            series = influx.query(f'SELECT * FROM "{measurement}" WHERE "node" = \'{node.node_id}\'', db=db)
        except Exception:
            continue  # no database or measurement yet: nothing stored
        total += sum(len(s["values"]) for s in series)
    return total


def taken(node: SimNode) -> int:
    return len(set(node.taken()))


def settle_and_stop(nodes: list[SimNode], influx, db: str, timeout: float = 120.0) -> None:
    """Stop duty-cycled nodes at a moment when each sleeps with everything it took in
    InfluxDB. A node that woke between the check and its stop is started again and the
    wait repeats, so a reading taken in that instant is never cut off uncounted."""
    for node in nodes:
        for _ in range(5):
            starts = node.stats.starts
            eventually(lambda n=node: n.sleeping and node_points(influx, db, n) == taken(n), timeout)
            node.stop()
            if node.stats.starts == starts:
                break
            node.start()
