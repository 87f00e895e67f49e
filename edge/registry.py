"""NodeRegistry: what the edge knows about every node it has heard from.

Kind (for `kind_mismatch`), online/offline (from the node's status and last will, and from
silence longer than `offline_after_intervals` reporting intervals), battery, RSSI,
firmware, and seq gaps: per (node, boot), the numbers between the first and the highest
seq seen that never arrived. Because the buffer deduplicates on (node, boot, seq) before
the registry counts, a redelivered reading never counts twice, and a late replay fills
its gap again.

State lives in memory for speed. What must agree with the buffer after a crash is
written in the same transaction as the messages that changed it: the per-boot seq
accounting, and a node's row when it is new or its kind, online state, firmware or
interval changed. The rest of a node's row (last seen, battery, RSSI) is written at most
once a second: after a kill -9 it may be a second old until the node's next reading.
`seq_gaps` is recomputed from the per-boot accounting when the registry loads.

The tables `nodes` (a row per node) and `node_boots` (the seq accounting per node and
boot) belong to this module; every statement on them is here.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from dataclasses import fields as dc_fields

from edge import schema
from edge.models import Ack, EventBase, ReadingBase, Status
from protocols import thresholds

KEEP_BOOTS = 4  # per node, the newest boots whose seq accounting is kept

TABLES = (
    """CREATE TABLE nodes (
    node TEXT PRIMARY KEY, district TEXT, zone TEXT, kind TEXT,
    first_seen_ms INTEGER, last_arrival_ms INTEGER, last_seen_ms INTEGER,
    online INTEGER, battery_v REAL, rssi REAL, fw TEXT, interval_s REAL, reset TEXT,
    boot INTEGER, seq INTEGER, seq_gaps INTEGER NOT NULL DEFAULT 0, health_ms INTEGER)""",
    """CREATE TABLE node_boots (
    node TEXT NOT NULL, boot INTEGER NOT NULL, first_seq INTEGER NOT NULL,
    max_seq INTEGER NOT NULL, received INTEGER NOT NULL, PRIMARY KEY (node, boot))""",
)


def add_closed_gaps(conn: sqlite3.Connection) -> None:
    """Schema 2: `nodes.closed_gaps`. Buffers of schema 1 made after the column was added
    to the first schema have it already."""
    if "closed_gaps" not in {r[1] for r in conn.execute("PRAGMA table_info(nodes)")}:
        conn.execute("ALTER TABLE nodes ADD COLUMN closed_gaps INTEGER NOT NULL DEFAULT 0")


def count_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    """Stored nodes by state: online, offline, unknown."""
    out: dict[str, int] = {}
    for online, n in conn.execute("SELECT online, count(*) FROM nodes GROUP BY online"):
        state = "online" if online else ("offline" if online == 0 else "unknown")
        out[state] = out.get(state, 0) + n
    return out


@dataclass
class NodeState:
    node: str
    district: str
    zone: str
    kind: str
    first_seen_ms: int
    last_arrival_ms: int
    last_seen_ms: int | None = None  # newest reading's own time
    online: bool | None = None
    battery_v: float | None = None
    rssi: float | None = None
    fw: str | None = None
    interval_s: float | None = None
    reset: str | None = None
    boot: int | None = None
    seq: int | None = None
    seq_gaps: int = 0
    health_ms: int | None = None  # when node_health was last written
    closed_gaps: int = 0  # gaps of boots no longer in the accounting

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dc_fields(self)}


_COLUMNS = [f.name for f in dc_fields(NodeState)]
_UPSERT = f"INSERT OR REPLACE INTO nodes ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


class NodeRegistry:
    def __init__(self, *, offline_after_intervals: float = 3.0, write_every_s: float = 60.0) -> None:
        self.offline_after = offline_after_intervals
        self.write_every_ms = int(write_every_s * 1000)
        self.nodes: dict[str, NodeState] = {}
        # node -> {boot: [first seq, highest seq, distinct seqs received]}
        self.boots: dict[str, dict[int, list[int]]] = {}
        self._dirty: set[str] = set()
        self._important: set[str] = set()  # rows to write with this very transaction
        self._dirty_boots: set[tuple[str, int]] = set()
        self._changed: set[str] = set()  # online flag flipped: health point now
        self._owed: set[str] = set()  # changed since their last health point
        self._forget: list[tuple[str, int]] = []
        self._next_scan_ms = 0

    # -- persistence ----------------------------------------------------------------
    def load(self, conn: sqlite3.Connection) -> None:
        for row in conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM nodes"):
            state = NodeState(*row)
            state.online = None if state.online is None else bool(state.online)
            self.nodes[state.node] = state
        for node, boot, first, high, received in conn.execute(
            "SELECT node, boot, first_seq, max_seq, received FROM node_boots"
        ):
            self.boots.setdefault(node, {})[boot] = [first, high, received]
        for state in self.nodes.values():
            state.seq_gaps = state.closed_gaps + sum(
                e[1] - e[0] + 1 - e[2] for e in self.boots.get(state.node, {}).values()
            )

    def flush(self, conn: sqlite3.Connection, now: int, full: bool = False) -> list[str]:
        """Write changed state; return the node_health lines that are due. `full` writes
        every changed node row (once a second), else only the important ones.

        A node whose online flag flipped gets a point at once; any other change is owed a
        point and gets it once `write_every_s` has passed since the node's last one (this
        runs after every commit and on the idle tick, so an owed point is never lost)."""
        lines = []
        # Owed points are looked at once a second at most (they are due once a minute);
        # online/offline changes are written at once.
        if now >= self._next_scan_ms:
            self._next_scan_ms = now + 1000
            candidates = sorted(self._owed)
        else:
            candidates = sorted(self._changed)
        for name in candidates:
            state = self.nodes[name]
            if (
                name in self._changed
                or state.health_ms is None
                or now - state.health_ms >= self.write_every_ms
            ):
                line = self.health_line(state, now)
                if line:
                    lines.append(line)
                state.health_ms = now
                self._dirty.add(name)
                self._owed.discard(name)
        rows = self._dirty if full else self._important
        for name in rows:
            state = self.nodes[name]
            conn.execute(_UPSERT, [getattr(state, c) for c in _COLUMNS])
        if full:
            self._dirty.clear()
        else:
            self._dirty -= self._important
        self._important.clear()
        boots = []
        for key in self._dirty_boots:
            entry = self.boots.get(key[0], {}).get(key[1])
            if entry is not None:
                boots.append((key[0], key[1], entry[0], entry[1], entry[2]))
        if boots:
            conn.executemany("INSERT OR REPLACE INTO node_boots VALUES (?, ?, ?, ?, ?)", boots)
        for node, boot in self._forget:
            conn.execute("DELETE FROM node_boots WHERE node=? AND boot=?", (node, boot))
        self._dirty_boots.clear()
        self._changed.clear()
        self._forget.clear()
        return lines

    @staticmethod
    def health_line(state: NodeState, now: int) -> str | None:
        return schema.health_line(
            state.district,
            state.zone,
            state.node,
            state.kind,
            now,
            online=state.online,
            battery_v=state.battery_v,
            rssi=state.rssi,
            last_seen=state.last_seen_ms,
            seq_gaps=state.seq_gaps,
            fw=state.fw,
        )

    # -- queries ----------------------------------------------------------------------
    def kind_of(self, node: str) -> str | None:
        state = self.nodes.get(node)
        return state.kind if state else None

    def interval_ms(self, state: NodeState) -> int:
        interval = state.interval_s or thresholds.DEFAULT_INTERVAL_S.get(state.kind, 60)
        return int(interval * 1000)

    # -- updates ------------------------------------------------------------------------
    def _state(self, district: str, zone: str, node: str, kind: str, arrival: int) -> NodeState:
        state = self.nodes.get(node)
        if state is None:
            state = NodeState(node, district, zone, kind, arrival, arrival)
            self.nodes[node] = state
            self._important.add(node)
        state.last_arrival_ms = max(state.last_arrival_ms, arrival)
        self._dirty.add(node)
        self._owed.add(node)
        return state

    def _set_online(self, state: NodeState, online: bool) -> None:
        if state.online != online:
            state.online = online
            self._changed.add(state.node)
            self._owed.add(state.node)
            self._dirty.add(state.node)
            self._important.add(state.node)

    def _count_seq(self, node: str, boot: int, seq: int) -> None:
        key = (node, boot)
        mine = self.boots.setdefault(node, {})
        entry = mine.get(boot)
        state = self.nodes[node]
        new = entry is None
        if new:
            entry = mine[boot] = [seq, seq, 0]
            old_gap = 0
        else:
            old_gap = entry[1] - entry[0] + 1 - entry[2]
        entry[0] = min(entry[0], seq)
        entry[1] = max(entry[1], seq)
        entry[2] += 1
        state.seq_gaps += (entry[1] - entry[0] + 1 - entry[2]) - old_gap
        self._dirty_boots.add(key)
        if new:
            self._trim_boots(node, mine)
        if state.boot is None or (boot, seq) > (state.boot, state.seq or 0):
            state.boot, state.seq = boot, seq

    def _trim_boots(self, node: str, mine: dict) -> None:
        # Old boots leave the accounting; their gaps stay counted (closed_gaps), written
        # in the same transaction as the deletion of their rows.
        for boot in sorted(mine)[:-KEEP_BOOTS]:
            e = mine.pop(boot)
            self.nodes[node].closed_gaps += e[1] - e[0] + 1 - e[2]
            self._important.add(node)
            self._dirty_boots.discard((node, boot))
            self._forget.append((node, boot))

    def on_reading(self, r: ReadingBase) -> None:
        state = self._state(r.district, r.zone, r.node, r.kind, r.arrival_ms)
        self._count_seq(r.node, r.boot, r.seq)
        if state.last_seen_ms is None or r.ts >= state.last_seen_ms:
            state.last_seen_ms = r.ts
            values = r.fields.values()
            if "battery_v" in values:
                state.battery_v = values["battery_v"]
            if "rssi" in values:
                state.rssi = values["rssi"]
        self._set_online(state, True)

    def on_event(self, e: EventBase) -> None:
        state = self._state(e.district, e.zone, e.node, e.kind, e.arrival_ms)
        self._count_seq(e.node, e.boot, e.seq)
        if state.last_seen_ms is None or e.ts >= state.last_seen_ms:
            state.last_seen_ms = e.ts
        self._set_online(state, True)

    def on_status(self, s: Status) -> None:
        state = self._state(s.district, s.zone, s.node, s.kind, s.arrival_ms)
        self._important.add(s.node)
        if s.fw is not None:
            state.fw = s.fw
        if s.interval_s is not None:
            state.interval_s = s.interval_s
        if s.reset is not None:
            state.reset = s.reset
        if state.boot is None or s.boot > state.boot:
            state.boot, state.seq = s.boot, s.seq
        self._set_online(state, s.state == "online")

    def on_ack(self, a: Ack) -> None:
        state = self._state(a.district, a.zone, a.node, a.kind, a.arrival_ms)
        self._set_online(state, True)

    def check_silence(self, now: int) -> int:
        """Mark nodes offline that have been silent too long; returns how many."""
        count = 0
        for state in self.nodes.values():
            if state.online and now - state.last_arrival_ms > self.offline_after * self.interval_ms(state):
                self._set_online(state, False)
                count += 1
        return count
