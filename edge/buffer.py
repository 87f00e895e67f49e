"""DurableBuffer: the SQLite store between ingest and the sinks.

One database file in WAL mode holds everything the edge must not lose or forget:

- `outbox`: line protocol waiting to be forwarded, one row per message and stream.
  Streams split what sinks consume: raw readings, rollups, node health, events (the fast
  lane) and alarms (normalized events for the MQTT republisher). Row ids only grow
  (AUTOINCREMENT), so each consumer's progress is one integer per stream in `cursors`,
  and a row leaves the outbox once every consumer of its stream has passed it.
- `seen`: the identity index (node, boot, seq) of every reading and event accepted, kept
  for `dedup_hours` even after the rows are forwarded, so a redelivery after a crash or a
  replay with a new `age_ms` is recognised and not written again with another time.
- `dead_letters`: rejected messages (reason, topic, payload, time) and lines a sink refused.
- `nodes`, `node_boots`: the node registry; `rollups`: one-minute aggregates.

Durability: the ingest thread writes a whole group of messages in one transaction and
acknowledges them to the broker only after COMMIT returns. `synchronous=FULL` (default)
fsyncs the WAL at each commit, so an acknowledged message survives power loss, not just
kill -9; group commit amortises that fsync over many messages. With `synchronous=NORMAL`
a commit survives a process crash but the last commits before a power cut may roll back,
and the broker would already have forgotten those messages: the choice is the operator's
(`[buffer] synchronous`), with FULL as the safe default.

Size cap: when the used pages exceed `max_bytes`, the oldest telemetry rows (raw,
rollup, health) are deleted first, down to 90 % of the cap; events and alarms are never
deleted by the cap.

Each thread opens its own connection (`connect()`); SQLite serialises writers, WAL lets
readers run beside the writer.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

RAW = 1        # raw readings (sinks with data = "raw")
ROLLUP = 2     # one-minute rollups (sinks with data = "rollup")
HEALTH = 3     # node_health (every sink)
EVENT = 4      # events measurement, the fast lane (every sink)
ALARM = 5      # normalized events to republish on alarms/v1/... (the alarm publisher)
STREAM_NAMES = {RAW: "raw", ROLLUP: "rollup", HEALTH: "health", EVENT: "event", ALARM: "alarm"}
TRIMMABLE = (RAW, ROLLUP, HEALTH)   # what the size cap may drop, oldest first

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,          -- arrival time at the edge (for lag)
    n INTEGER NOT NULL,              -- lines in this row
    topic TEXT,                      -- alarms: the topic to publish on
    body TEXT NOT NULL               -- line protocol, one line per line; alarms: JSON
);
CREATE INDEX IF NOT EXISTS outbox_stream ON outbox(stream, id);
CREATE TABLE IF NOT EXISTS cursors (
    consumer TEXT NOT NULL, stream INTEGER NOT NULL, last_id INTEGER NOT NULL,
    PRIMARY KEY (consumer, stream));
CREATE TABLE IF NOT EXISTS seen (node TEXT NOT NULL, boot INTEGER NOT NULL,
    seq INTEGER NOT NULL, at_ms INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS seen_identity ON seen(node, boot, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL, reason TEXT NOT NULL, topic TEXT, payload BLOB,
    detail TEXT, source TEXT NOT NULL DEFAULT 'ingest');
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters(reason);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY, district TEXT, zone TEXT, kind TEXT,
    first_seen_ms INTEGER, last_arrival_ms INTEGER, last_seen_ms INTEGER,
    online INTEGER, battery_v REAL, rssi REAL, fw TEXT, interval_s REAL, reset TEXT,
    boot INTEGER, seq INTEGER, seq_gaps INTEGER NOT NULL DEFAULT 0, health_ms INTEGER,
    closed_gaps INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS node_boots (
    node TEXT NOT NULL, boot INTEGER NOT NULL, first_seq INTEGER NOT NULL,
    max_seq INTEGER NOT NULL, received INTEGER NOT NULL, PRIMARY KEY (node, boot));
CREATE TABLE IF NOT EXISTS rollups (
    node TEXT NOT NULL, minute_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    district TEXT NOT NULL, zone TEXT NOT NULL, agg TEXT NOT NULL,
    dirty INTEGER NOT NULL, PRIMARY KEY (node, minute_ms));
CREATE INDEX IF NOT EXISTS rollups_dirty ON rollups(minute_ms) WHERE dirty = 1;
CREATE INDEX IF NOT EXISTS rollups_minute ON rollups(minute_ms);
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class OutboxRow:
    id: int
    at_ms: int
    n: int
    topic: str | None
    body: str


class DurableBuffer:
    """The buffer database: schema, connections, and the operations every stage uses."""

    def __init__(self, path: str | Path, *, max_bytes: int = 2_000_000_000,
                 synchronous: str = "full", dead_letter_max_rows: int = 100_000) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.synchronous = synchronous.upper()
        self.dead_letter_max_rows = dead_letter_max_rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._changed = threading.Condition()
        self._version = 0
        # Consumers do not write: they post progress and refused lines here, and the commit
        # loop (the one writer) applies them in its next transaction. One writer means no
        # lock waits: SQLite's busy handler sleeps in steps of up to 100 ms, which is
        # what an alarm cannot afford.
        self._posted_lock = threading.Lock()
        self._posted_marks: dict[tuple[str, int], int] = {}
        self._posted_dead: list[tuple] = []
        conn = self.connect()
        with conn:
            conn.executescript(_SCHEMA)
            columns = {r[1] for r in conn.execute("PRAGMA table_info(nodes)")}
            if "closed_gaps" not in columns:     # buffers made before the column existed
                conn.execute("ALTER TABLE nodes ADD COLUMN closed_gaps INTEGER NOT NULL DEFAULT 0")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
        conn.close()

    # -- connections --------------------------------------------------------------
    def connect(self, readonly: bool = False) -> sqlite3.Connection:
        if readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30,
                                   isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            # Keep the WAL file from staying large after a burst.
            conn.execute("PRAGMA journal_size_limit=67108864")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    # -- change notification (consumers wait for new rows) -------------------------
    def notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def wait_change(self, seen_version: int, timeout: float) -> int:
        with self._changed:
            if self._version == seen_version:
                self._changed.wait(timeout)
            return self._version

    @property
    def version(self) -> int:
        return self._version

    # -- writing (the ingest thread, inside its transaction) ----------------------
    @staticmethod
    def first_time(conn: sqlite3.Connection, node: str, boot: int, seq: int, at_ms: int) -> bool:
        """Record an identity; False if (node, boot, seq) was accepted before."""
        cur = conn.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?)",
                           (node, boot, seq, at_ms))
        return cur.rowcount == 1

    @staticmethod
    def first_times(conn: sqlite3.Connection, identities: list[tuple[str, int, int, int]],
                    chunk: int = 200) -> set[tuple[str, int, int]]:
        """Record many identities (node, boot, seq, at_ms) at once; return those that were
        new (INSERT OR IGNORE ... RETURNING gives back only the rows it inserted)."""
        new: set[tuple[str, int, int]] = set()
        for start in range(0, len(identities), chunk):
            part = identities[start:start + chunk]
            sql = ("INSERT OR IGNORE INTO seen VALUES " + ",".join(["(?,?,?,?)"] * len(part))
                   + " RETURNING node, boot, seq")
            new.update(conn.execute(sql, [v for ident in part for v in ident]).fetchall())
        return new

    @staticmethod
    def append(conn: sqlite3.Connection, stream: int, lines: list[str], at_ms: int,
               topic: str | None = None) -> None:
        if lines:
            conn.execute("INSERT INTO outbox (stream, at_ms, n, topic, body) VALUES (?, ?, ?, ?, ?)",
                         (stream, at_ms, len(lines), topic, "\n".join(lines)))

    @staticmethod
    def dead_letter(conn: sqlite3.Connection, reason: str, topic: str | None,
                    payload: bytes | str | None, detail: str = "", at_ms: int | None = None,
                    source: str = "ingest") -> None:
        conn.execute("INSERT INTO dead_letters (at_ms, reason, topic, payload, detail, source)"
                     " VALUES (?, ?, ?, ?, ?, ?)",
                     (at_ms if at_ms is not None else now_ms(), reason, topic, payload,
                      detail, source))

    # -- posted by consumers, applied by the writer -----------------------------------
    def post_advance(self, consumer: str, stream: int, last_id: int) -> None:
        with self._posted_lock:
            key = (consumer, stream)
            if last_id > self._posted_marks.get(key, 0):
                self._posted_marks[key] = last_id

    def post_dead_letter(self, reason: str, topic: str | None, payload: bytes | None,
                         detail: str, at_ms: int, source: str) -> None:
        with self._posted_lock:
            self._posted_dead.append((reason, topic, payload, detail, at_ms, source))

    def apply_posted(self, conn: sqlite3.Connection) -> int:
        """Write what consumers posted (inside the caller's transaction)."""
        with self._posted_lock:
            marks, self._posted_marks = self._posted_marks, {}
            dead, self._posted_dead = self._posted_dead, []
        for (consumer, stream), last_id in marks.items():
            self.advance(conn, consumer, stream, last_id)
        for reason, topic, payload, detail, at_ms, source in dead:
            self.dead_letter(conn, reason, topic, payload, detail, at_ms, source)
        return len(marks) + len(dead)

    # -- reading (forwarders, alarm publisher) -------------------------------------
    @staticmethod
    def cursor(conn: sqlite3.Connection, consumer: str, stream: int) -> int:
        row = conn.execute("SELECT last_id FROM cursors WHERE consumer=? AND stream=?",
                           (consumer, stream)).fetchone()
        return row[0] if row else 0

    @staticmethod
    def ensure_cursor(conn: sqlite3.Connection, consumer: str, stream: int) -> int:
        conn.execute("INSERT OR IGNORE INTO cursors VALUES (?, ?, 0)", (consumer, stream))
        return DurableBuffer.cursor(conn, consumer, stream)

    @staticmethod
    def read(conn: sqlite3.Connection, stream: int, after_id: int, max_lines: int,
             max_rows: int = 100_000) -> list[OutboxRow]:
        rows: list[OutboxRow] = []
        lines = 0
        for r in conn.execute("SELECT id, at_ms, n, topic, body FROM outbox WHERE stream=? AND id>?"
                              " ORDER BY id LIMIT ?", (stream, after_id, min(max_lines, max_rows))):
            if rows and lines + r[2] > max_lines:
                break
            rows.append(OutboxRow(*r))
            lines += r[2]
        return rows

    @staticmethod
    def advance(conn: sqlite3.Connection, consumer: str, stream: int, last_id: int) -> None:
        conn.execute("UPDATE cursors SET last_id=? WHERE consumer=? AND stream=? AND last_id<?",
                     (last_id, consumer, stream, last_id))

    @staticmethod
    def oldest_pending(conn: sqlite3.Connection, stream: int, after_id: int) -> int | None:
        row = conn.execute("SELECT at_ms FROM outbox WHERE stream=? AND id>? ORDER BY id LIMIT 1",
                           (stream, after_id)).fetchone()
        return row[0] if row else None

    @staticmethod
    def pending(conn: sqlite3.Connection, stream: int, after_id: int) -> tuple[int, int]:
        """(rows, lines) after a cursor."""
        row = conn.execute("SELECT count(*), coalesce(sum(n), 0) FROM outbox WHERE stream=? AND id>?",
                           (stream, after_id)).fetchone()
        return row[0], row[1]

    # -- maintenance (the ingest thread, its own transactions) ---------------------
    def drop_unknown_consumers(self, conn: sqlite3.Connection, consumers: dict[int, list[str]]) -> None:
        """Forget cursors of consumers no longer configured, and create the new ones."""
        wanted = {(c, s) for s, cs in consumers.items() for c in cs}
        for consumer, stream in conn.execute("SELECT consumer, stream FROM cursors").fetchall():
            if (consumer, stream) not in wanted:
                conn.execute("DELETE FROM cursors WHERE consumer=? AND stream=?", (consumer, stream))
        for consumer, stream in wanted:
            conn.execute("INSERT OR IGNORE INTO cursors VALUES (?, ?, 0)", (consumer, stream))

    @staticmethod
    def collect(conn: sqlite3.Connection, consumers: dict[int, list[str]]) -> int:
        """Delete rows every consumer of their stream has passed; returns rows deleted."""
        deleted = 0
        for stream in STREAM_NAMES:
            names = consumers.get(stream) or []
            if names:
                marks = [DurableBuffer.cursor(conn, c, stream) for c in names]
                upto = min(marks)
            else:
                upto = conn.execute("SELECT coalesce(max(id), 0) FROM outbox WHERE stream=?",
                                    (stream,)).fetchone()[0]
            if upto:
                deleted += conn.execute("DELETE FROM outbox WHERE stream=? AND id<=?",
                                        (stream, upto)).rowcount
        return deleted

    @staticmethod
    def used_bytes(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size

    def enforce_cap(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """Drop the oldest telemetry until under 90 % of max_bytes. Returns (rows, lines).

        A row holds one commit's readings, so rows are picked by their size: the oldest
        ones whose bodies add up to the excess go, then the size is measured again."""
        used = self.used_bytes(conn)
        if used <= self.max_bytes:
            return 0, 0
        target = int(self.max_bytes * 0.9)
        rows = lines = 0
        marks = ",".join(str(s) for s in TRIMMABLE)
        while used > target:
            excess = used - target
            conn.execute("BEGIN IMMEDIATE")
            victims = []
            freed = 0
            for vid, n, size in conn.execute(
                    f"SELECT id, n, length(body) FROM outbox WHERE stream IN ({marks})"
                    " ORDER BY id LIMIT 1000"):
                victims.append((vid, n))
                freed += size + 32
                if freed >= excess:
                    break
            if not victims:
                conn.execute("COMMIT")
                break
            conn.executemany("DELETE FROM outbox WHERE id=?", [(v[0],) for v in victims])
            conn.execute("COMMIT")
            rows += len(victims)
            lines += sum(v[1] for v in victims)
            used = self.used_bytes(conn)
        return rows, lines

    @staticmethod
    def prune_seen(conn: sqlite3.Connection, before_ms: int, chunk: int = 20000) -> int:
        # rowid order is arrival order, so the oldest identities are at the front.
        oldest = conn.execute("SELECT at_ms FROM seen ORDER BY rowid LIMIT 1").fetchone()
        if oldest is None or oldest[0] >= before_ms:
            return 0
        return conn.execute(
            "DELETE FROM seen WHERE rowid IN (SELECT rowid FROM seen ORDER BY rowid LIMIT ?)"
            " AND at_ms < ?", (chunk, before_ms)).rowcount

    def prune_dead_letters(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT max(id) FROM dead_letters").fetchone()
        if not row[0]:
            return 0
        return conn.execute("DELETE FROM dead_letters WHERE id <= ?",
                            (row[0] - self.dead_letter_max_rows,)).rowcount

    # -- inspection (CLI, tests) ----------------------------------------------------
    def dead_letters(self, limit: int = 1000) -> list[dict]:
        conn = self.connect(readonly=True)
        try:
            rows = conn.execute("SELECT id, at_ms, reason, topic, payload, detail, source FROM"
                                " dead_letters ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        finally:
            conn.close()
        keys = ("id", "at_ms", "reason", "topic", "payload", "detail", "source")
        return [dict(zip(keys, r)) for r in rows]


def stream_lines(rows: Iterable[OutboxRow]) -> str:
    return "\n".join(r.body for r in rows)


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
