"""The identity index `seen`: (node, boot, seq) of every reading and event accepted.

Identities are kept for `dedup_hours` after arrival, even after their rows are
forwarded, so a redelivery after a crash or a node replaying its queue with a new
`age_ms` is recognised and not written again with another timestamp. This module is the
one that knows the table; every statement on it is here.
"""

from __future__ import annotations

import sqlite3

TABLES = (
    """CREATE TABLE seen (node TEXT NOT NULL, boot INTEGER NOT NULL,
    seq INTEGER NOT NULL, at_ms INTEGER NOT NULL)""",
    "CREATE UNIQUE INDEX seen_identity ON seen(node, boot, seq)",
)

Identity = tuple[str, int, int]  # (node, boot, seq)


# Rows per INSERT, here and for the timestamp index (edge.stamps): a whole group commit
# of single readings (commit_max_messages, 1,000 by default) in one statement; 4,000
# parameters, far below SQLite's limit (32,766 since SQLite 3.32; Python 3.11's own
# library here allows 250,000).
GROUP_ROWS = 1000


def first_times(
    conn: sqlite3.Connection, identities: list[tuple[str, int, int, int]], chunk: int = GROUP_ROWS
) -> set[Identity]:
    """Record many identities (node, boot, seq, at_ms) at once; return those that were
    new."""
    return insert_new(conn, "seen", identities, "node, boot, seq", chunk)


def insert_new(conn: sqlite3.Connection, table: str, rows: list[tuple], key: str, chunk: int = 200) -> set:
    """INSERT OR IGNORE rows into an index kept by arrival (`seen`, or `stamps` of
    edge.stamps) in statements of `chunk` rows; returns the `key` columns of the rows
    inserted (RETURNING gives back only those). Rows go in in order, so of two equal
    rows the first is the one inserted."""
    new: set = set()
    width = ",".join("?" * len(rows[0])) if rows else ""
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        sql = (
            f"INSERT OR IGNORE INTO {table} VALUES "
            + ",".join([f"({width})"] * len(part))
            + f" RETURNING {key}"
        )
        new.update(conn.execute(sql, [v for row in part for v in row]).fetchall())
    return new


def prune(conn: sqlite3.Connection, before_ms: int, chunk: int = 20000) -> int:
    """Forget up to `chunk` identities that arrived before `before_ms`."""
    return delete_oldest(conn, "seen", before_ms, chunk)


def delete_oldest(conn: sqlite3.Connection, table: str, before_ms: int, chunk: int) -> int:
    """Delete up to `chunk` of the oldest rows whose `at_ms` is before `before_ms`, from an
    index kept by arrival: `seen`, or `stamps` (edge.stamps, which keeps its timestamps
    as long as identities). Rows are appended in arrival order, so rowid order is
    arrival order and the oldest rows are at the front."""
    oldest = conn.execute(f"SELECT at_ms FROM {table} ORDER BY rowid LIMIT 1").fetchone()
    if oldest is None or oldest[0] >= before_ms:
        return 0
    return conn.execute(
        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} ORDER BY rowid LIMIT ?) AND at_ms < ?",
        (chunk, before_ms),
    ).rowcount
