"""A command that asks questions on stderr and reads its answers on stdin, driven as a
person at the keyboard would: wait for the question, do something (plug a board in),
answer."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Sequence

from tests.support.cli import URBANSENSE


class Dialogue:
    """`urbansense ARGS...` in a subprocess, its stderr read as it comes."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [URBANSENSE, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env} if env else None,
        )
        self._err = bytearray()
        self._out = bytearray()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(stream, into: bytearray) -> None:
        for chunk in iter(lambda: stream.read1(4096), b""):
            into.extend(chunk)

    @property
    def stderr(self) -> str:
        return self._err.decode(errors="replace")

    @property
    def stdout(self) -> str:
        return self._out.decode(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout: float = 120.0) -> None:
        """Until `text` has appeared `count` times on stderr (the deadline is a hang guard)."""
        deadline = time.monotonic() + timeout
        while self.stderr.count(text) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {count}x {text!r} on stderr; it says:\n{self.stderr[-3000:]}")
            time.sleep(0.05)

    def answer(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 240.0) -> int:
        """Close the keyboard and wait for the command to end; its exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return code
