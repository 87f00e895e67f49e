"""A site end to end for receipt fault tests: real firmware nodes (hil/sim.py) on a private
Mosquitto, the real edge process and the real InfluxDB 1.6, and the exact count of what
reached the database against what the nodes took (the sim HAL's taken.log).

The broker's autosave is put off for an hour (`LATE_SAVE`), so a `kill -9` loses
everything it acknowledged since it started: the worst moment to lose a broker."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from hil.sim import SimNode
from tests.support.edge_process import EdgeProcess, v1_sink, write_config
from tests.support.fleet import make_node
from tests.support.waiting import wait_for

# Mosquitto takes the last value of a repeated option: this one comes after the
# one-second autosave of hil/services.py.
LATE_SAVE = "autosave_interval 3600"
KIND_STIMULI = {
    "leak": {"wet": False},
    "parking": {"mag_delta_ut": 0.0, "mag_drift_ut": 0.0},
    "air": {},
}


def queue_records(flash: Path, name: str = "tm") -> list[dict]:
    """The records of a node's flash queue, from its head (node/queue.py): each holds its
    `boot` and `seq`, and `ts` (the epoch) or `l` (the local clock) of its sample."""
    folder = flash / "queue" / name
    if not folder.exists():
        return []
    head = json.loads((folder / "head").read_text()) if (folder / "head").exists() else [0, 0]
    segs = sorted(int(n) for n in os.listdir(folder) if n.isdigit() and int(n) >= head[0])
    skip = head[1] if segs and segs[0] == head[0] else 0
    out = []
    for num in segs:
        out += [json.loads(raw) for raw in (folder / str(num)).read_bytes().split(b"\n")[:-1][skip:]]
        skip = 0
    return out


def queued(flash: Path, name: str = "tm") -> list[tuple[int, int]]:
    """(boot, seq) of the records in a node's flash queue, from its head."""
    return [(r["boot"], r["seq"]) for r in queue_records(flash, name)]


def node_dropped(node: SimNode) -> int:
    """The node's own dropped counter (kept in flash; written only when the bound drops)."""
    path = node.flash_dir / "state" / "counters.json"
    return json.loads(path.read_text())["dropped"] if path.exists() else 0


def wipe_broker(broker) -> None:
    """The broker's disk lost: its persistence folder emptied (while it is down)."""
    data = broker.workdir / "data"
    shutil.rmtree(data)
    data.mkdir()


@dataclass
class NodeSite:
    """One zone: a broker, an InfluxDB database, an edge config and nodes."""

    tmp: Path
    bundle: Path
    broker: object
    influx: object
    db: str
    make_edge: object  # the `edges` fixture's maker
    edge_extra: dict = field(default_factory=dict)
    nodes: dict[str, SimNode] = field(default_factory=dict)
    edge: EdgeProcess | None = None

    def write_edge_config(self, **extra) -> Path:
        return write_config(
            self.tmp / "edge",
            mqtt_port=self.broker.port,
            client_id=f"edge-{self.db}",
            sinks=[v1_sink("district", self.influx, self.db)],
            extra={"health": {"write_every_s": 0.5, "check_every_s": 0.5}, **self.edge_extra, **extra},
        )

    def start_edge(self, **extra) -> EdgeProcess:
        config = self.write_edge_config(**extra)
        if self.edge is None:
            self.edge = self.make_edge(config)
        return self.edge.start()

    def add_node(self, kind: str, node_id: str, schedule: str, interval_s: float, **extra) -> SimNode:
        node = make_node(self.tmp, self.bundle, self.broker, kind, node_id, schedule, interval_s, **extra)
        for name, value in KIND_STIMULI[kind].items():
            node.set_stimulus(name, value)
        self.nodes[node_id] = node
        return node

    def start_nodes(self) -> None:
        for node in self.nodes.values():
            node.start()

    def stop_nodes(self) -> None:
        for node in self.nodes.values():
            node.stop()

    # -- counting ---------------------------------------------------------------------
    def seen(self, node_id: str) -> set[tuple[int, int]]:
        """(boot, seq) the edge has committed for the node (its de-duplication table)."""
        if self.edge is None or not self.edge.db_path.exists():
            return set()
        return set(self.edge.query("SELECT boot, seq FROM seen WHERE node=?", (node_id,)))

    def committed_all(self, node_id: str, wanted: set[tuple[int, int]]) -> bool:
        return wanted <= self.seen(node_id)

    def wait_committed(self, wanted: dict[str, set[tuple[int, int]]], timeout: float = 120) -> None:
        for node_id, ids in wanted.items():
            wait_for(
                lambda n=node_id, w=ids: self.committed_all(n, w),
                timeout,
                0.2,
                what=f"{node_id}'s {len(ids)} readings committed (missing "
                f"{sorted(ids - self.seen(node_id))[:8]})",
            )

    def points(self, node_id: str) -> int:
        """Points of the node in InfluxDB: its readings (measurement = kind) and events."""
        kind = self.nodes[node_id].config["kind"]
        total = 0
        for measurement in (kind, "events"):
            try:
                series = self.influx.query(
                    f"SELECT * FROM \"{measurement}\" WHERE node='{node_id}'", db=self.db
                )
            except Exception:  # the database or measurement does not exist yet
                series = []
            total += sum(len(s["values"]) for s in series)
        return total

    def settle(self) -> dict[str, dict]:
        """Stop the nodes and count exactly. Every reading and event a node took is either
        committed by the edge, or (the newest few, taken after its last publish) still in
        the node's flash queue; InfluxDB holds one point per committed identity; the edge's
        loss figure and the nodes' dropped counters are 0. Returns the counts per node."""
        self.stop_nodes()
        # A node's last publish can still be on its way to the edge when the node stops:
        # the counts are taken again until the edge's table, InfluxDB and the counts agree
        # (a point more than the table is a double and fails at once).
        deadline = time.monotonic() + 60
        while True:
            counts = self._counts()
            points = {n: self.points(n) for n in self.nodes}
            seen_now = {n: len(self.seen(n)) for n in self.nodes}  # after the points
            later = {n: c for n, c in seen_now.items() if c != counts[n]["stored"]}
            for node_id in counts:
                assert points[node_id] <= seen_now[node_id], (node_id, points[node_id], counts)
            if not later and all(points[n] == c["stored"] for n, c in counts.items()):
                break
            assert time.monotonic() < deadline, ("counts still moving", later, points, counts)
            time.sleep(0.2)
        assert self.edge is not None
        health = self.edge.nodes()
        for node_id, node in self.nodes.items():
            assert node_dropped(node) == 0 and node.stats.dropped == 0, node_id
            assert (health[node_id]["seq_gaps"], health[node_id]["dropped"]) == (0, 0), health[node_id]
        print("counts:", counts)
        return counts

    def _counts(self) -> dict[str, dict]:
        """Per node: what it took, what the edge committed, what it holds; each committed
        identity one the node took, and each held one still in its flash queue, newer than
        every committed one."""
        counts = {}
        for node_id, node in self.nodes.items():
            taken = node.taken()
            assert len(taken) == len(set(taken)), f"{node_id}: an identity taken twice"
            seen = self.seen(node_id)
            assert seen <= set(taken), f"{node_id}: committed what it never took {sorted(seen - set(taken))}"
            held = set(taken) - seen
            kept = set(queued(node.flash_dir)) | set(queued(node.flash_dir, "ev"))
            assert held <= kept, f"{node_id}: lost {sorted(held - kept)}"
            # Only the tail is held back: nothing older than a committed reading is missing.
            newest = max(seen)
            assert all(i > newest for i in held), f"{node_id}: held {sorted(held)} behind {newest}"
            counts[node_id] = {"taken": len(taken), "stored": len(seen), "held": len(held)}
        return counts
