"""DurableBuffer: the SQLite store between ingest and the sinks, as the stages share it.

The database (edge.database: its file, schema and migrations) holds everything the edge
must not lose or forget; each table's statements live in the module that owns it. This
object is what the threads share around it: the path and settings to open their own
connections with, the change notification that wakes consumers, the progress and refused
lines consumers post for the one writer, and the limits the writer's maintenance keeps.

Durability: the commit loop writes a whole group of messages in one transaction and
acknowledges them to the broker only after COMMIT returns. `synchronous=FULL` (default)
fsyncs the WAL at each commit, so an acknowledged message survives power loss, not just
kill -9; group commit amortises that fsync over many messages. With `synchronous=NORMAL`
a commit survives a process crash but the last commits before a power cut may roll back,
and the broker would already have forgotten those messages: the choice is the operator's
(`[buffer] synchronous`), with FULL as the safe default.

Size cap: `max_bytes` bounds what the buffer takes on disk, the database file and its
write-ahead log. Over it, free pages go back to the file system and the WAL is
checkpointed and truncated; if that is not enough, dead letters go first (oldest first:
they are samples of what was refused, and one node's junk must never cost another node
its readings), then the oldest telemetry rows (raw, rollup, health), down to 90 % of the
cap; events and alarms are never deleted by the cap. Dead letters alone are kept under a
tenth of the cap (`dead_letter_max_bytes`).

Reserve: a file of `reserve_bytes` beside the database, given back when the disk fills,
so the writer can still store the consumers' progress and delete forwarded rows (both
need room in the WAL) and the buffer drains; it is made again once there is room.

Each thread opens its own connection (`connect()`); SQLite serialises writers, WAL lets
readers run beside the writer.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from edge import database, deadletters, outbox
from edge.deadletters import DeadLetter
from edge.outbox import Stream

log = logging.getLogger("urbansense.edge.buffer")

# What a writer took from the consumers' posts: (cursor marks, dead letters).
Posted = tuple[dict[tuple[str, Stream], int], list[DeadLetter]]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class DurableBuffer:
    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 2_000_000_000,
        synchronous: str = "full",
        dead_letter_max_rows: int = 100_000,
        reserve_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.reserve_path = Path(f"{self.path}.reserve")
        self.reserve_bytes = reserve_bytes
        self._reserve_held = False  # the reserve file is known to hold reserve_bytes
        self.synchronous = synchronous.upper()
        self.dead_letter_max_rows = dead_letter_max_rows
        self.dead_letter_max_bytes = max_bytes // 10
        self._changed = threading.Condition()
        self._version = 0
        # Consumers do not write: they post progress and refused lines here, and the commit
        # loop (the one writer) applies them in its next transaction. One writer means no
        # lock waits: SQLite's busy handler sleeps in steps of up to 100 ms, which is
        # what an alarm cannot afford.
        self._posted_lock = threading.Lock()
        self._posted_marks: dict[tuple[str, Stream], int] = {}
        self._posted_dead: list[DeadLetter] = []
        conn = database.open_database(self.path, synchronous=self.synchronous)
        try:
            # A buffer made with incremental auto-vacuum gives free pages back to the file
            # system; an older one only reuses them, so its cap counts pages in use.
            self.shrinks = conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        finally:
            conn.close()

    def connect(self, readonly: bool = False) -> sqlite3.Connection:
        return database.connect(
            self.path,
            synchronous=self.synchronous,
            readonly=readonly,
            wal_bytes_max=None if readonly else self.wal_bytes_max,
        )

    @property
    def wal_bytes_max(self) -> int:
        """How far the writer lets the WAL grow before a checkpoint: an eighth of the cap
        (the cap counts the WAL), and a quarter of the reserve, so that on a full disk the
        room the reserve gives back holds the pages a checkpoint moves into the database
        (that much, and the group commit that passed it)."""
        limit = self.max_bytes // 8
        if self.reserve_bytes:
            limit = min(limit, self.reserve_bytes // 4)
        return max(64 * 1024, limit)

    # -- disk space ------------------------------------------------------------------------
    def keep_reserve(self) -> bool:
        """Make sure the reserve file holds `reserve_bytes`; False when the disk has no
        room for it (what was written is removed again)."""
        if self.reserve_bytes <= 0 or self._reserve_held:
            return True  # called after every commit: no file system call once it is held
        try:
            if self.reserve_path.stat().st_size >= self.reserve_bytes:
                self._reserve_held = True
                return True
        except FileNotFoundError:
            pass
        try:
            with open(self.reserve_path, "wb") as f:
                try:
                    os.posix_fallocate(f.fileno(), 0, self.reserve_bytes)
                except OSError as err:
                    if database.is_disk_full(err):
                        raise
                    # No fallocate on this file system: real bytes take the room as well.
                    f.write(bytes(self.reserve_bytes))
                    f.flush()
                os.fsync(f.fileno())
            self._reserve_held = True
            return True
        except OSError as err:
            if not database.is_disk_full(err):
                raise
            self.release_reserve()
            return False

    def release_reserve(self) -> None:
        self._reserve_held = False
        self.reserve_path.unlink(missing_ok=True)

    def give_back(self, conn: sqlite3.Connection, budget: int | None = None) -> None:
        """Free pages back to the file system and the WAL truncated, a step of at most
        `budget` bytes at a time (moving pages writes them to the WAL first), so it also
        works on a full disk with the reserve's room only."""
        step = max(16, (budget or self.max_bytes // 8) // 4 // 4096)
        for _ in range(256):
            before = database.file_bytes(self.path)
            database.give_back(conn, step)
            if not self.shrinks or database.free_bytes(conn) == 0:
                return
            if database.file_bytes(self.path) >= before:
                return  # a reader holds the WAL: the next call goes on

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

    # -- posted by consumers, applied by the writer -----------------------------------
    def post_advance(self, consumer: str, stream: Stream, last_id: int) -> None:
        with self._posted_lock:
            key = (consumer, stream)
            if last_id > self._posted_marks.get(key, 0):
                self._posted_marks[key] = last_id

    def post_dead_letter(self, letter: DeadLetter) -> None:
        with self._posted_lock:
            self._posted_dead.append(letter)

    def apply_posted(self, conn: sqlite3.Connection) -> Posted:
        """Write what consumers posted (inside the caller's transaction). Returns what was
        taken: if the transaction fails, `repost` it so it is written with a later one."""
        with self._posted_lock:
            marks, self._posted_marks = self._posted_marks, {}
            dead, self._posted_dead = self._posted_dead, []
        for (consumer, stream), last_id in marks.items():
            outbox.advance(conn, consumer, stream, last_id)
        for letter in dead:
            deadletters.add(conn, letter)
        return marks, dead

    def repost(self, posted: Posted) -> None:
        """What a failed transaction had taken, back in the queue (before newer posts)."""
        marks, dead = posted
        with self._posted_lock:
            for key, last_id in marks.items():
                if last_id > self._posted_marks.get(key, 0):
                    self._posted_marks[key] = last_id
            self._posted_dead[:0] = dead

    # -- limits (the writer's maintenance) ----------------------------------------------
    def database_bytes(self, conn: sqlite3.Connection) -> int:
        """What the cap counts of the database beside its WAL: the file (for an older
        buffer that cannot give free pages back: the pages in use)."""
        if self.shrinks:
            return database.database_bytes(self.path)
        return database.used_bytes(conn)

    def enforce_cap(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """Keep the buffer's disk use under max_bytes (after every commit and once a
        second; cheap while under). The WAL is counted at its bound (`wal_bytes_max`:
        checkpoints bring it back there): first free pages go back and the WAL is
        truncated; if the database would still pass the cap with that WAL beside it, the
        oldest telemetry is dropped until under 90 % of it, in transactions of its own,
        measured again after each, and the pages given back. Returns (rows, lines)."""
        wal = database.wal_bytes(self.path)
        if self.database_bytes(conn) + max(wal, self.wal_bytes_max) <= self.max_bytes:
            return 0, 0
        self.give_back(conn)
        target = int(self.max_bytes * 0.9) - self.wal_bytes_max
        used = database.used_bytes(conn)
        rows = lines = 0
        freed = False  # dead letters dropped
        while used > target:
            with database.transaction(conn):
                letters = deadletters.drop_oldest(conn, used - target)
                dropped_rows = dropped_lines = 0
                if not letters:
                    dropped_rows, dropped_lines = outbox.drop_oldest_telemetry(conn, used - target)
            if letters:
                log.warning("buffer over max_bytes: dropped the %d oldest dead letters", letters)
                used = database.used_bytes(conn)
                freed = True
                continue
            if not dropped_rows:
                break
            rows += dropped_rows
            lines += dropped_lines
            used = database.used_bytes(conn)
        if rows or freed:
            self.give_back(conn)
        return rows, lines

    def prune_dead_letters(self, conn: sqlite3.Connection) -> int:
        return deadletters.prune(conn, self.dead_letter_max_rows, self.dead_letter_max_bytes)
