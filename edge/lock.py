"""BufferLock: one edge per buffer. Two edges on one config would share a buffer and a
client id and knock each other off the broker for ever; the second one is refused at
start, in one line, instead.

The lock is `flock` on a file beside the buffer (`<buffer>.lock`, holding the owner's
pid): the kernel drops it when the process ends however it ends (kill -9 included), so a
stale lock never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class EdgeStartError(RuntimeError):
    """The edge cannot start; the message is one line for the operator."""


class BufferLock:
    def __init__(self, buffer_path: Path) -> None:
        self.path = Path(f"{buffer_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise EdgeStartError(
                f"another edge (pid {owner}) runs on the buffer {self.path.with_suffix('')}: stop it, or give "
                "each edge its own [buffer] path and [mqtt] client_id"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
