"""RollupBook: one-minute rollups (`{kind}_1m` in edge/SCHEMA.md) made at the edge.

Each accepted reading is added to the aggregate of its node and minute (by the reading's
own time). Aggregates live in the buffer database, written in the same transaction as
the readings, so a crash neither loses nor double-counts them (readings are deduplicated
before they get here). A minute is rolled up `delay_s` after it ends; a late reading
(a node replaying its queue) marks its minute dirty again and the point is rewritten
from the full aggregate, replacing the earlier one in InfluxDB. Aggregates are kept for
`keep_hours`; a reading older than that goes to the raw sinks only.

The table `rollups` belongs to this module; every statement on it is here.
"""

from __future__ import annotations

import json
import sqlite3

from edge import schema
from edge.models import ReadingBase

CACHE_MINUTES = 10

TABLES = (
    """CREATE TABLE rollups (
    node TEXT NOT NULL, minute_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    district TEXT NOT NULL, zone TEXT NOT NULL, agg TEXT NOT NULL,
    dirty INTEGER NOT NULL, PRIMARY KEY (node, minute_ms))""",
    "CREATE INDEX rollups_dirty ON rollups(minute_ms) WHERE dirty = 1",
    "CREATE INDEX rollups_minute ON rollups(minute_ms)",
)


class RollupBook:
    def __init__(self, *, delay_s: float = 5.0, keep_hours: float = 24.0, worker: str | None = None) -> None:
        self.delay_ms = int(delay_s * 1000)
        self.keep_ms = int(keep_hours * 3600 * 1000)
        self.worker = worker
        # (node, minute) -> [kind, district, zone, agg]; write-through cache of recent minutes
        self._cache: dict[tuple[str, int], list] = {}
        self._dirty: set[tuple[str, int]] = set()

    def add(self, conn: sqlite3.Connection, r: ReadingBase, now: int) -> None:
        if r.ts < now - self.keep_ms:
            return
        key = (r.node, schema.minute_of(r.ts))
        entry = self._cache.get(key)
        if entry is None:
            row = conn.execute(
                "SELECT kind, district, zone, agg FROM rollups WHERE node=? AND minute_ms=?", key
            ).fetchone()
            entry = [r.kind, r.district, r.zone, json.loads(row[3]) if row else {}]
            self._cache[key] = entry
        schema.aggregate_add(entry[3], r)
        self._dirty.add(key)

    def forget(self) -> None:
        """Drop the cache (after a rolled-back transaction: it held what was not stored);
        aggregates are read again from the table as readings come."""
        self._cache.clear()
        self._dirty.clear()

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write the aggregates changed in this transaction."""
        for key in self._dirty:
            kind, district, zone, agg = self._cache[key]
            conn.execute(
                "INSERT OR REPLACE INTO rollups VALUES (?, ?, ?, ?, ?, ?, 1)",
                (key[0], key[1], kind, district, zone, json.dumps(agg, separators=(",", ":"))),
            )
        self._dirty.clear()

    def due(self, conn: sqlite3.Connection, now: int) -> list[str]:
        """Lines for every dirty minute that has ended (plus the delay); marks them clean."""
        cutoff = now - 60000 - self.delay_ms
        rows = conn.execute(
            "SELECT node, minute_ms, kind, district, zone, agg FROM rollups WHERE dirty=1 AND minute_ms <= ?",
            (cutoff,),
        ).fetchall()
        lines = []
        for node, minute, kind, district, zone, agg in rows:
            line = schema.rollup_line(kind, district, zone, node, minute, json.loads(agg), self.worker)
            if line:
                lines.append(line)
        if rows:
            conn.executemany(
                "UPDATE rollups SET dirty=0 WHERE node=? AND minute_ms=?", [(r[0], r[1]) for r in rows]
            )
        return lines

    def prune(self, conn: sqlite3.Connection, now: int) -> int:
        for key in [k for k in self._cache if k[1] < now - CACHE_MINUTES * 60000]:
            if key not in self._dirty:
                del self._cache[key]
        return conn.execute(
            "DELETE FROM rollups WHERE minute_ms < ? AND dirty=0", (now - self.keep_ms,)
        ).rowcount
