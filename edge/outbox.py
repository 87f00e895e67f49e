"""The outbox and its cursors: line protocol waiting to be forwarded, and each consumer's
progress through it.

`outbox` holds one row per message (or per group commit) and stream. Row ids only grow
(AUTOINCREMENT), so a consumer's progress through a stream is one integer in `cursors`,
and a row leaves the outbox once every consumer of its stream has passed it. The size
cap may take the oldest telemetry rows (raw, rollup, health), never events or alarms.

This module is the one that knows these two tables; every statement on them is here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum


class Stream(IntEnum):
    """What a row of the outbox is for; the number is stored in the `stream` column."""

    RAW = 1  # raw readings (sinks with data = "raw")
    ROLLUP = 2  # one-minute rollups (sinks with data = "rollup")
    HEALTH = 3  # node_health (every sink)
    EVENT = 4  # events measurement, the fast lane (every sink)
    ALARM = 5  # normalized events to republish on alarms/v1/... (the alarm publisher)

    @property
    def label(self) -> str:
        """The stream's name in metrics and thread names."""
        return self.name.lower()


TRIMMABLE = (Stream.RAW, Stream.ROLLUP, Stream.HEALTH)  # what the size cap may drop, oldest first

# Consumers by stream: {stream: [consumer names]}.
Consumers = Mapping[Stream, Iterable[str]]

TABLES = (
    """CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,          -- arrival time at the edge (for lag)
    n INTEGER NOT NULL,              -- lines in this row
    topic TEXT,                      -- alarms: the topic to publish on
    body TEXT NOT NULL               -- line protocol, one line per line; alarms: JSON
)""",
    "CREATE INDEX outbox_stream ON outbox(stream, id)",
    """CREATE TABLE cursors (
    consumer TEXT NOT NULL, stream INTEGER NOT NULL, last_id INTEGER NOT NULL,
    PRIMARY KEY (consumer, stream))""",
)


@dataclass
class OutboxRow:
    id: int
    at_ms: int
    n: int
    topic: str | None
    body: str


# -- writing (the commit loop, inside its transaction) ---------------------------------
def append(
    conn: sqlite3.Connection, stream: Stream, lines: list[str], at_ms: int, topic: str | None = None
) -> None:
    if lines:
        conn.execute(
            "INSERT INTO outbox (stream, at_ms, n, topic, body) VALUES (?, ?, ?, ?, ?)",
            (stream, at_ms, len(lines), topic, "\n".join(lines)),
        )


def advance(conn: sqlite3.Connection, consumer: str, stream: Stream, last_id: int) -> None:
    """Move a cursor forward (never back)."""
    conn.execute(
        "UPDATE cursors SET last_id=? WHERE consumer=? AND stream=? AND last_id<?",
        (last_id, consumer, stream, last_id),
    )


def keep_cursors(conn: sqlite3.Connection, consumers: Consumers) -> None:
    """Forget cursors of consumers no longer configured, and create the new ones."""
    wanted = {(c, Stream(s)) for s, cs in consumers.items() for c in cs}
    for consumer, stream in conn.execute("SELECT consumer, stream FROM cursors").fetchall():
        if (consumer, stream) not in wanted:
            conn.execute("DELETE FROM cursors WHERE consumer=? AND stream=?", (consumer, stream))
    for consumer, stream in wanted:
        conn.execute("INSERT OR IGNORE INTO cursors VALUES (?, ?, 0)", (consumer, stream))


def collect(conn: sqlite3.Connection, consumers: Consumers, limit: int | None = None) -> int:
    """Delete rows every consumer of their stream has passed, the oldest first and at
    most `limit` of a stream (a small transaction: on a full disk, what fits in the room
    left); returns rows deleted."""
    deleted = 0
    for stream in Stream:
        names = list(consumers.get(stream) or ())
        if names:
            upto = min(cursor(conn, c, stream) for c in names)
        else:
            upto = conn.execute(
                "SELECT coalesce(max(id), 0) FROM outbox WHERE stream=?", (stream,)
            ).fetchone()[0]
        if upto and limit is None:
            deleted += conn.execute("DELETE FROM outbox WHERE stream=? AND id<=?", (stream, upto)).rowcount
        elif upto:
            deleted += conn.execute(
                "DELETE FROM outbox WHERE id IN "
                "(SELECT id FROM outbox WHERE stream=? AND id<=? ORDER BY id LIMIT ?)",
                (stream, upto, limit),
            ).rowcount
    return deleted


def drop_oldest_telemetry(conn: sqlite3.Connection, excess: int) -> tuple[int, int]:
    """Delete the oldest telemetry rows whose bodies add up to `excess` bytes (in the
    caller's transaction); returns (rows, lines). A row holds one commit's readings, so
    rows are picked by their size."""
    marks = ",".join(str(int(s)) for s in TRIMMABLE)
    victims = []
    freed = 0
    for vid, n, size in conn.execute(
        f"SELECT id, n, length(body) FROM outbox WHERE stream IN ({marks}) ORDER BY id LIMIT 1000"
    ):
        victims.append((vid, n))
        freed += size + 32
        if freed >= excess:
            break
    conn.executemany("DELETE FROM outbox WHERE id=?", [(v[0],) for v in victims])
    return len(victims), sum(v[1] for v in victims)


# -- reading (consumers, metrics) -------------------------------------------------------
def cursor(conn: sqlite3.Connection, consumer: str, stream: Stream) -> int:
    row = conn.execute(
        "SELECT last_id FROM cursors WHERE consumer=? AND stream=?", (consumer, stream)
    ).fetchone()
    return row[0] if row else 0


def read(
    conn: sqlite3.Connection, stream: Stream, after_id: int, max_lines: int, max_rows: int = 100_000
) -> list[OutboxRow]:
    """Rows after a cursor, up to `max_lines` lines (but at least one row)."""
    rows: list[OutboxRow] = []
    lines = 0
    for r in conn.execute(
        "SELECT id, at_ms, n, topic, body FROM outbox WHERE stream=? AND id>? ORDER BY id LIMIT ?",
        (stream, after_id, min(max_lines, max_rows)),
    ):
        if rows and lines + r[2] > max_lines:
            break
        rows.append(OutboxRow(*r))
        lines += r[2]
    return rows


def oldest_pending(conn: sqlite3.Connection, stream: Stream, after_id: int) -> int | None:
    """Arrival time of the first row after a cursor."""
    row = conn.execute(
        "SELECT at_ms FROM outbox WHERE stream=? AND id>? ORDER BY id LIMIT 1", (stream, after_id)
    ).fetchone()
    return row[0] if row else None


def pending(conn: sqlite3.Connection, stream: Stream, after_id: int) -> tuple[int, int]:
    """(rows, lines) after a cursor."""
    row = conn.execute(
        "SELECT count(*), coalesce(sum(n), 0) FROM outbox WHERE stream=? AND id>?", (stream, after_id)
    ).fetchone()
    return row[0], row[1]


def backlog(conn: sqlite3.Connection, consumer: str, streams: Iterable[Stream]) -> tuple[int, int | None]:
    """(lines, arrival time of the oldest) a consumer of these streams has not passed
    yet, from its stored cursors."""
    lines = 0
    oldest: int | None = None
    for stream in streams:
        mark = cursor(conn, consumer, stream)
        at = oldest_pending(conn, stream, mark)
        if at is not None:
            oldest = at if oldest is None else min(oldest, at)
        lines += pending(conn, stream, mark)[1]
    return lines, oldest
