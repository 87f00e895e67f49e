"""StreamConsumer: the loop every reader of the outbox runs, each with a cursor of its own.

A consumer reads the rows of one stream after its cursor, delivers them, and posts the
advance past them; the commit loop (the one writer) stores that with its next
transaction. With nothing to read it waits until a commit wakes it. It starts from its
stored cursor, so after a restart it resumes where its last stored advance left it; a
row delivered but not yet stored when the process died is delivered again (at least
once: a sink's rewrite has the same timestamps, an alarm carries its identity).

A subclass says how to deliver (`deliver`), and may wait for a fuller batch (`batch`) or
hold a connection of its own (`begin`, `close`). Its cursor exists once the commit loop's
`prepare` has run with `cursors_of(consumers)`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable

from edge import outbox
from edge.buffer import DurableBuffer
from edge.outbox import OutboxRow, Stream

log = logging.getLogger("urbansense.edge.consumer")


class StreamConsumer(threading.Thread):
    def __init__(
        self,
        buffer: DurableBuffer,
        consumer: str,
        stream: Stream,
        stop: threading.Event,
        *,
        name: str,
        max_lines: int = 200,
        on_crash: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.buffer = buffer
        self.consumer = consumer  # the cursor's name
        self.stream = stream
        self.stop_event = stop
        self.max_lines = max_lines  # the most lines read at once (at least one row)
        self.on_crash = on_crash

    # -- what a subclass says --------------------------------------------------------------
    def deliver(self, rows: list[OutboxRow]) -> bool:
        """Deliver rows: True once done (the cursor moves past them); False to have the
        same rows read again (wait first, if that is what the failure needs)."""
        raise NotImplementedError

    def batch(self, conn: sqlite3.Connection, mark: int) -> list[OutboxRow]:
        """The rows to deliver next (none: wait for a commit)."""
        return outbox.read(conn, self.stream, mark, self.max_lines)

    def begin(self) -> None:
        """Before the first read."""

    def close(self) -> None:
        """When the loop ends, however it ends."""

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._follow()
        except Exception:
            log.exception("%s crashed", self.name)
            if self.on_crash is not None:
                self.on_crash()
        finally:
            self.close()

    def _follow(self) -> None:
        conn = self.buffer.connect(readonly=True)
        try:
            mark = outbox.cursor(conn, self.consumer, self.stream)
            self.begin()
            version = self.buffer.version
            while not self.stop_event.is_set():
                rows = self.batch(conn, mark)
                if not rows:
                    version = self.buffer.wait_change(version, 0.5)
                    continue
                if self.deliver(rows):
                    mark = rows[-1].id
                    self.buffer.post_advance(self.consumer, self.stream, mark)
        finally:
            conn.close()


def cursors_of(consumers: Iterable[StreamConsumer]) -> dict[Stream, list[str]]:
    """{stream: the names of its consumers}, every stream present."""
    out: dict[Stream, list[str]] = {stream: [] for stream in Stream}
    for c in consumers:
        out[c.stream].append(c.consumer)
    return out
