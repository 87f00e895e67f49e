"""Frames between the edge and its receiving process (edge.receiver): a 4-byte length,
then one `marshal`led tuple.

Both ends are this package's code under the same interpreter, and only ints, strings,
bytes, booleans, lists and tuples travel: marshal is the standard library's fastest
serializer for exactly those (several times pickle's speed on a list of small tuples), and
it never builds objects of other types. A pipe between two processes of one program needs
nothing more; no library frames it for less.
"""

from __future__ import annotations

import marshal
import os
import struct
import threading
from typing import Any

_LENGTH = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024  # a frame larger than this is a broken stream, not a batch


class FrameError(Exception):
    """The stream is not frames (or ended inside one)."""


class FrameWriter:
    """Writes whole frames to a file descriptor; several threads may write."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()

    def write(self, frame: tuple[Any, ...]) -> None:
        body = marshal.dumps(frame)
        data = memoryview(_LENGTH.pack(len(body)) + body)
        with self._lock:
            while data:
                data = data[os.write(self.fd, data) :]


class FrameReader:
    """Reads frames from a file descriptor, one thread at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()

    def read(self) -> tuple[Any, ...] | None:
        """The next frame; None at the end of the stream (the other side is gone)."""
        head = self._exactly(_LENGTH.size)
        if head is None:
            return None
        (length,) = _LENGTH.unpack(head)
        if length > MAX_FRAME:
            raise FrameError(f"a frame of {length} bytes")
        body = self._exactly(length)
        if body is None:
            raise FrameError("the stream ended inside a frame")
        frame = marshal.loads(body)
        if not isinstance(frame, tuple) or not frame:
            raise FrameError(f"not a frame: {type(frame).__name__}")
        return frame

    def _exactly(self, n: int) -> bytes | None:
        # Reads in large chunks: one system call brings many frames under load.
        while len(self._buffer) < n:
            chunk = os.read(self.fd, max(65536, n - len(self._buffer)))
            if not chunk:
                if self._buffer:
                    raise FrameError("the stream ended inside a frame")
                return None
            self._buffer += chunk
        with memoryview(self._buffer) as view:
            out = bytes(view[:n])  # one copy, not a bytearray slice and then bytes of it
        del self._buffer[:n]
        return out
