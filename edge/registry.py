"""NodeRegistry: what the edge knows about every node it has heard from.

Kind (for `kind_mismatch`), online/offline (from the node's status and last will, and from
silence longer than `offline_after_intervals` reporting intervals), battery, RSSI,
firmware, and seq gaps: per (node, boot), the numbers between the first and the highest
seq seen that never arrived. Because the buffer deduplicates on (node, boot, seq) before
the registry counts, a redelivered reading never counts twice, and a late replay fills
its gap again. The first seq of a boot is the lower of the first one seen and the
`first_seq` of the node's birth (protocols/SPEC.md 6.4), so readings lost at the start of
a boot, before the edge first heard of the node, count too; the birth's `dropped` (what
the node's queue bound took) is kept beside.

Clock: from live messages carrying a node `ts` (a single reading, an event, a birth) the
registry keeps `ts - arrival` over the node's last CLOCK_WINDOW messages; the estimate of
the node's clock offset is their largest value, since a message delayed on the way only
makes it more negative (SPEC.md 7.1.5). Beyond `max_offset_s` the node is flagged
`clock_bad`, with a warning in the log when it crosses; behind, only once
CLOCK_MIN_SAMPLES messages agree (after a long edge outage a node's backlog, all of it
delayed, may flag it until its next live message). Timestamps moved off a collision
(`ts_collisions`) and readings whose time the edge estimated (`estimated_times`) are
counted per node.

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

import logging
import sqlite3
from collections import deque
from dataclasses import dataclass
from dataclasses import fields as dc_fields
from operator import attrgetter

from edge import schema
from edge.models import Ack, EventBase, ReadingBase, Status
from protocols import thresholds

log = logging.getLogger("urbansense.edge.registry")

KEEP_BOOTS = 4  # per node, the newest boots whose seq accounting is kept
CLOCK_WINDOW = 16  # live messages per node the clock offset estimate looks at
# A clock behind is flagged only on this many messages: one message delayed on the way
# looks like a clock behind (a clock ahead cannot be faked by a delay: flagged at once).
CLOCK_MIN_SAMPLES = 3

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


# Schema 4: the clock offset estimate and its flag, the node's own dropped counter, and
# the counts of moved and estimated timestamps.
_CLOCK_AND_LOSS = (
    ("clock_offset_ms", "REAL"),
    ("clock_bad", "INTEGER"),
    ("dropped", "INTEGER"),
    ("ts_collisions", "INTEGER NOT NULL DEFAULT 0"),
    ("estimated_times", "INTEGER NOT NULL DEFAULT 0"),
)


def add_clock_and_loss(conn: sqlite3.Connection) -> None:
    for column, decl in _CLOCK_AND_LOSS:
        conn.execute(f"ALTER TABLE nodes ADD COLUMN {column} {decl}")


def clock_summary(conn: sqlite3.Connection) -> tuple[int, float]:
    """(stored nodes flagged for a bad clock, the largest |offset| in ms of any node)."""
    bad, worst = conn.execute(
        "SELECT coalesce(sum(clock_bad), 0), coalesce(max(abs(clock_offset_ms)), 0) FROM nodes"
    ).fetchone()
    return int(bad), float(worst)


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
    clock_offset_ms: float | None = None  # estimate: node clock minus edge clock
    clock_bad: bool | None = None  # |offset| beyond [clock] max_offset_s
    dropped: int | None = None  # the node's own count of records its queue bound took
    ts_collisions: int = 0  # timestamps moved off another reading's
    estimated_times: int = 0  # readings and events whose time the edge estimated

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dc_fields(self)}


_COLUMNS = [f.name for f in dc_fields(NodeState)]
_ROW = attrgetter(*_COLUMNS)  # a node's row, in _COLUMNS order
_UPSERT = f"INSERT OR REPLACE INTO nodes ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


class NodeRegistry:
    def __init__(
        self,
        *,
        offline_after_intervals: float = 3.0,
        write_every_s: float = 60.0,
        max_clock_offset_s: float = 120.0,
    ) -> None:
        self.offline_after = offline_after_intervals
        self.write_every_ms = int(write_every_s * 1000)
        self.max_clock_offset_ms = max_clock_offset_s * 1000
        # node -> ts - arrival of its last CLOCK_WINDOW live messages
        self.clock_samples: dict[str, deque[float]] = {}
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
    def reload(self, conn: sqlite3.Connection) -> None:
        """Forget what is held in memory and load the stored state again (after a
        rolled-back transaction, so nothing it counted is counted twice when the same
        messages are committed again). Changes not yet written (battery, RSSI, last seen
        of the last second) are lost; the next readings bring them back."""
        self.clock_samples.clear()
        self.nodes.clear()
        self.boots.clear()
        for pending in (self._dirty, self._important, self._dirty_boots, self._changed, self._owed):
            pending.clear()
        self._forget.clear()
        self.load(conn)

    def load(self, conn: sqlite3.Connection) -> None:
        for row in conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM nodes"):
            state = NodeState(*row)
            state.online = None if state.online is None else bool(state.online)
            state.clock_bad = None if state.clock_bad is None else bool(state.clock_bad)
            self.nodes[state.node] = state
            if state.clock_offset_ms is not None:
                # The stored estimate stands until newer messages replace it.
                self.clock_samples[state.node] = deque(
                    [state.clock_offset_ms] * CLOCK_MIN_SAMPLES, maxlen=CLOCK_WINDOW
                )
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
        if rows:
            # One statement for all: in a backlog every group touches hundreds of nodes.
            nodes = self.nodes
            conn.executemany(_UPSERT, [_ROW(nodes[name]) for name in rows])
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
        if self._forget:
            conn.executemany("DELETE FROM node_boots WHERE node=? AND boot=?", self._forget)
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
            clock_offset_ms=state.clock_offset_ms,
            clock_bad=state.clock_bad,
            dropped=state.dropped,
            ts_collisions=state.ts_collisions,
            estimated_times=state.estimated_times,
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

    def _boot_entry(self, node: str, boot: int, first: int, last: int, received: int) -> None:
        """Widen the accounting of (node, boot) to [first, last] and add `received`
        arrivals; the node's seq gaps follow."""
        mine = self.boots.setdefault(node, {})
        entry = mine.get(boot)
        new = entry is None
        if new:
            entry = mine[boot] = [first, last, 0]
            old_gap = 0
        else:
            old_gap = entry[1] - entry[0] + 1 - entry[2]
        entry[0] = min(entry[0], first)
        entry[1] = max(entry[1], last)
        entry[2] += received
        self.nodes[node].seq_gaps += (entry[1] - entry[0] + 1 - entry[2]) - old_gap
        self._dirty_boots.add((node, boot))
        if new:
            self._trim_boots(node, mine)

    def _count_seq(self, node: str, boot: int, seq: int) -> None:
        self._boot_entry(node, boot, seq, seq, 1)
        state = self.nodes[node]
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
            # What the node sent, read in place (FieldsBase.values() builds a dict per
            # reading for the two fields looked at here).
            sent = r.fields.model_fields_set
            if "battery_v" in sent:
                state.battery_v = r.fields.battery_v
            if "rssi" in sent:
                state.rssi = r.fields.rssi
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
        if s.state == "online":
            if s.first_seq is not None:
                # Nothing below first_seq is waiting at the node: what of it never
                # arrived here was lost (an empty range, last = first - 1, when the
                # node holds nothing of the boot yet).
                self._boot_entry(s.node, s.boot, s.first_seq, s.first_seq - 1, 0)
            if s.dropped is not None:
                state.dropped = s.dropped
        self._set_online(state, s.state == "online")

    def on_clock(self, node: str, ts: int, arrival_ms: int) -> None:
        """A live message of the node stamped `ts` by its clock arrived at `arrival_ms`."""
        state = self.nodes[node]
        window = self.clock_samples.get(node)
        if window is None:
            window = self.clock_samples[node] = deque(maxlen=CLOCK_WINDOW)
        window.append(float(ts - arrival_ms))
        state.clock_offset_ms = offset = max(window)
        limit = self.max_clock_offset_ms
        bad = offset > limit or (offset < -limit and len(window) >= CLOCK_MIN_SAMPLES)
        if state.clock_bad != bad:
            if bad:
                log.warning(
                    "node %s: clock off by %.1f s (limit %.0f s)",
                    node,
                    state.clock_offset_ms / 1000,
                    self.max_clock_offset_ms / 1000,
                )
            elif state.clock_bad:
                log.info("node %s: clock within %.0f s again", node, self.max_clock_offset_ms / 1000)
            state.clock_bad = bad
            self._changed.add(node)
            self._important.add(node)

    def on_time(self, node: str, *, estimated: bool, moved: bool) -> None:
        """A new reading or event of the node: its time was estimated by the edge, and/or
        moved off another's timestamp."""
        state = self.nodes[node]
        state.estimated_times += int(estimated or moved)
        if moved:
            # Rare, and counted once: written with the transaction that moved it.
            state.ts_collisions += 1
            self._important.add(node)

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
