"""The dead-letter table: every message the edge refused (reason, topic, payload, arrival
time) and every line a sink refused (source = the sink's name). Nothing invalid is
dropped silently; the table keeps the newest `dead_letter_max_rows` rows and at most
`max_bytes` (a tenth of the buffer's cap), and over the buffer's cap dead letters go
before any reading. This module is the one that knows the table; every statement on it
is here.

One node cannot fill it (a node box can be opened and made to send anything): the
`Sampler` stores a node's first `SAMPLE_PER_NODE` refused messages of each reason and
minute whole (one of each kind of fault is what an operator needs) and only counts the rest, in one row per node and reason that says how many were not
stored (kept current as they come). Every message is still accounted for, and the
metrics count all of them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from protocols.topics import ROOT

# A node's refused messages of one reason stored whole per minute (the rest are counted).
SAMPLE_PER_NODE = 20
# Bytes a row costs beyond its payload, topic and detail (ids, times, reason, b-tree).
ROW_OVERHEAD = 64

TABLES = (
    """CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL, reason TEXT NOT NULL, topic TEXT, payload BLOB,
    detail TEXT, source TEXT NOT NULL DEFAULT 'ingest')""",
    "CREATE INDEX dead_letters_reason ON dead_letters(reason)",
)


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    topic: str | None
    payload: bytes | str | None
    detail: str
    at_ms: int
    source: str = "ingest"


def add(conn: sqlite3.Connection, letter: DeadLetter) -> None:
    conn.execute(
        "INSERT INTO dead_letters (at_ms, reason, topic, payload, detail, source) VALUES (?, ?, ?, ?, ?, ?)",
        (letter.at_ms, letter.reason, letter.topic, letter.payload, letter.detail, letter.source),
    )


def prune(conn: sqlite3.Connection, keep_rows: int, keep_bytes: int | None = None) -> int:
    """Delete all but the newest `keep_rows` rows, and the oldest beyond `keep_bytes`;
    returns rows deleted."""
    row = conn.execute("SELECT max(id) FROM dead_letters").fetchone()
    if not row[0]:
        return 0
    deleted = conn.execute("DELETE FROM dead_letters WHERE id <= ?", (row[0] - keep_rows,)).rowcount
    if keep_bytes is not None:
        deleted += drop_oldest(conn, keep_bytes, keep=True)
    return deleted


def drop_oldest(conn: sqlite3.Connection, nbytes: int, keep: bool = False) -> int:
    """Delete the oldest rows holding about `nbytes` (keep=True: all but the newest
    `nbytes`); returns rows deleted."""
    size = f"coalesce(length(payload), 0) + coalesce(length(topic), 0) + coalesce(length(detail), 0) + {ROW_OVERHEAD}"
    order = "DESC" if keep else "ASC"
    # The running total, newest first (keep) or oldest first (drop): the boundary row.
    found = conn.execute(
        f"SELECT id FROM (SELECT id, sum({size}) OVER (ORDER BY id {order}) AS total FROM dead_letters)"
        f" WHERE total {'>' if keep else '>='} ? ORDER BY id {order} LIMIT 1",
        (nbytes,),
    ).fetchone()
    if found is None:
        return 0 if keep else conn.execute("DELETE FROM dead_letters").rowcount
    return conn.execute("DELETE FROM dead_letters WHERE id <= ?", (found[0],)).rowcount


def node_of(topic: str | None) -> str:
    """The node id of a node topic (the broker's ACL makes it the sender's account), ""
    for anything else."""
    parts = (topic or "").split("/", 6)
    return parts[4] if len(parts) >= 6 and parts[0] == ROOT else ""


class Sampler:
    """Stores a node's first `per_node` refused messages of each reason and window whole
    and counts the rest in one row per node and reason (payload NULL, the count in its detail: "N
    more ..."), kept current as they come. `new_window` starts the next window. Used by
    the commit loop's thread only, inside its transactions."""

    def __init__(self, per_node: int = SAMPLE_PER_NODE) -> None:
        self.per_node = per_node
        self.stored: dict[tuple[str, str], int] = {}
        self.counted: dict[tuple[str, str], tuple[int, int]] = {}  # -> (row id, count)

    def add(self, conn: sqlite3.Connection, letter: DeadLetter) -> bool:
        """Store the letter or count it; True if stored whole."""
        node = node_of(letter.topic)
        key = (node, letter.reason)
        done = self.stored.get(key, 0)
        if done < self.per_node:
            self.stored[key] = done + 1
            add(conn, letter)
            return True
        row_id, count = self.counted.get(key, (0, 0))
        count += 1
        detail = (
            f"{count} more {letter.reason} messages from {f'node {node}' if node else 'topics outside the node scheme'}"
            f" not stored (its first {self.per_node} of the minute are); last: {letter.detail}"
        )
        updated = (
            row_id
            and conn.execute(
                "UPDATE dead_letters SET detail = ?, at_ms = ? WHERE id = ?", (detail, letter.at_ms, row_id)
            ).rowcount
        )
        if not updated:  # the first of the window, or its row was pruned meanwhile
            row_id = conn.execute(
                "INSERT INTO dead_letters (at_ms, reason, topic, payload, detail, source) VALUES (?, ?, ?, NULL, ?, ?)",
                (letter.at_ms, letter.reason, letter.topic, detail, letter.source),
            ).lastrowid
        self.counted[key] = (row_id, count)
        return False

    def new_window(self) -> int:
        """Start a new window; returns the messages the last one counted without storing."""
        total = sum(count for _, count in self.counted.values())
        self.stored.clear()
        self.counted.clear()
        return total


def counted(detail: str | None) -> int:
    """How many messages a counting row stands for (0 for a stored letter's detail)."""
    head = (detail or "").split(" more ", 1)[0]
    return int(head) if head.isdigit() and " more " in (detail or "") else 0


def count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]


def by_reason(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """(reason, rows), the most frequent first."""
    return conn.execute(
        "SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY 2 DESC"
    ).fetchall()


def newest(conn: sqlite3.Connection, limit: int) -> list[dict]:
    """The newest rows, newest first, as dicts of every column."""
    keys = ("id", "at_ms", "reason", "topic", "payload", "detail", "source")
    rows = conn.execute(
        f"SELECT {', '.join(keys)} FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [dict(zip(keys, r)) for r in rows]
