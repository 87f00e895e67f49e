"""The timestamp index `stamps`: (node, series, ts) of every reading and event stored.

InfluxDB keeps one point per series and timestamp, so two distinct readings of a node
that end up with the same time would silently become one. That happens to readings with
`age_ms` that waited at the broker together (the edge stamps them arrival - age_ms, and
they arrive in one burst), and to a node whose clock stepped back. Before a new reading
or event is written, its timestamp is claimed here; one already taken by another
identity is moved forward 1 ms at a time until it is free (protocols/SPEC.md 3.2), and
the caller marks and counts it.

Timestamps are kept as long as identities (`dedup_hours`): a collision with an older
point would need a reading that waited longer than that. This module is the one that
knows the table; every statement on it is here.
"""

from __future__ import annotations

import sqlite3

from edge.identities import GROUP_ROWS, delete_oldest, insert_new

TABLES = (
    """CREATE TABLE stamps (node TEXT NOT NULL, series TEXT NOT NULL,
    ts INTEGER NOT NULL, at_ms INTEGER NOT NULL)""",
    "CREATE UNIQUE INDEX stamps_point ON stamps(node, series, ts)",
)

Point = tuple[str, str, int]  # (node, series, ts)

HINTS_MAX = 10_000  # remembered ends of runs of taken timestamps (a hint, not state)
SCAN = 1000  # taken timestamps read at once while looking for a free one


class TimestampIndex:
    """Claims timestamps in the table `stamps`. A node whose readings keep asking for one
    time (a stuck clock, a burst of clockless readings) builds a run of taken
    milliseconds; where each run was last extended is remembered, so the next reading
    that asks for that time does not walk the run again (one node cannot make the edge
    slow down quadratically)."""

    def __init__(self) -> None:
        self._run_end: dict[Point, int] = {}  # asked point -> the last ms given for it

    def claim(
        self, conn: sqlite3.Connection, points: list[Point], at_ms: int, chunk: int = GROUP_ROWS
    ) -> list[int]:
        """Claim each point's timestamp; returns the timestamp each got: its own when free
        (of equal points, the first given), else the next ms no point of the group or
        before it has taken."""
        got = [p[2] for p in points]
        free = insert_new(conn, "stamps", [(*p, at_ms) for p in points], "node, series, ts", chunk)
        moved: list[int] = []
        for i, point in enumerate(points):
            if point in free:
                free.discard(point)  # of equal points, the first got it
            else:
                moved.append(i)
        for i in moved:
            point = points[i]
            node, series, ts = point
            ts = _first_free(conn, node, series, max(ts, self._run_end.get(point, ts)) + 1)
            conn.execute("INSERT INTO stamps VALUES (?,?,?,?)", (node, series, ts, at_ms))
            if len(self._run_end) >= HINTS_MAX:
                self._run_end.clear()
            self._run_end[point] = ts
            got[i] = ts
        return got


def _first_free(conn: sqlite3.Connection, node: str, series: str, ts: int) -> int:
    """The first ms at or after `ts` the node's series has not taken."""
    while True:
        taken = conn.execute(
            "SELECT ts FROM stamps WHERE node=? AND series=? AND ts>=? ORDER BY ts LIMIT ?",
            (node, series, ts, SCAN),
        ).fetchall()
        for (t,) in taken:
            if t != ts:
                return ts
            ts += 1
        if len(taken) < SCAN:
            return ts


def prune(conn: sqlite3.Connection, before_ms: int, chunk: int = 20000) -> int:
    """Forget up to `chunk` timestamps claimed before `before_ms`."""
    return delete_oldest(conn, "stamps", before_ms, chunk)
