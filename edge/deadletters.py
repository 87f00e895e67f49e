"""The dead-letter table: every message the edge refused (reason, topic, payload, arrival
time) and every line a sink refused (source = the sink's name). Nothing invalid is
dropped silently; the table keeps the newest `dead_letter_max_rows` rows. This module is
the one that knows the table; every statement on it is here.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

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


def prune(conn: sqlite3.Connection, keep_rows: int) -> int:
    """Delete all but the newest `keep_rows` rows; returns rows deleted."""
    row = conn.execute("SELECT max(id) FROM dead_letters").fetchone()
    if not row[0]:
        return 0
    return conn.execute("DELETE FROM dead_letters WHERE id <= ?", (row[0] - keep_rows,)).rowcount


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
