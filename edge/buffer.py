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

Size cap: when the used pages exceed `max_bytes`, dead letters go first (oldest first:
they are samples of what was refused, and one node's junk must never cost another node
its readings), then the oldest telemetry rows (raw, rollup, health), down to 90 % of the
cap; events and alarms are never deleted by the cap. Dead letters alone are kept under a
tenth of the cap (`dead_letter_max_bytes`).

Each thread opens its own connection (`connect()`); SQLite serialises writers, WAL lets
readers run beside the writer.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from edge import database, deadletters, outbox
from edge.deadletters import DeadLetter
from edge.outbox import Stream

log = logging.getLogger("urbansense.edge.buffer")


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
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
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
        database.open_database(self.path, synchronous=self.synchronous).close()

    def connect(self, readonly: bool = False) -> sqlite3.Connection:
        return database.connect(self.path, synchronous=self.synchronous, readonly=readonly)

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

    def apply_posted(self, conn: sqlite3.Connection) -> int:
        """Write what consumers posted (inside the caller's transaction)."""
        with self._posted_lock:
            marks, self._posted_marks = self._posted_marks, {}
            dead, self._posted_dead = self._posted_dead, []
        for (consumer, stream), last_id in marks.items():
            outbox.advance(conn, consumer, stream, last_id)
        for letter in dead:
            deadletters.add(conn, letter)
        return len(marks) + len(dead)

    # -- limits (the writer's maintenance) ----------------------------------------------
    def enforce_cap(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """Drop the oldest telemetry until under 90 % of max_bytes, in transactions of
        its own; the size is measured again after each. Returns (rows, lines)."""
        used = database.used_bytes(conn)
        if used <= self.max_bytes:
            return 0, 0
        target = int(self.max_bytes * 0.9)
        rows = lines = 0
        while used > target:
            conn.execute("BEGIN IMMEDIATE")
            try:
                letters = deadletters.drop_oldest(conn, used - target)
                dropped_rows = dropped_lines = 0
                if not letters:
                    dropped_rows, dropped_lines = outbox.drop_oldest_telemetry(conn, used - target)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if letters:
                log.warning("buffer over max_bytes: dropped the %d oldest dead letters", letters)
                used = database.used_bytes(conn)
                continue
            if not dropped_rows:
                break
            rows += dropped_rows
            lines += dropped_lines
            used = database.used_bytes(conn)
        return rows, lines

    def prune_dead_letters(self, conn: sqlite3.Connection) -> int:
        return deadletters.prune(conn, self.dead_letter_max_rows, self.dead_letter_max_bytes)
