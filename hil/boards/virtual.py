"""A virtual board as a handle for tests, rigs and benchmarks: start it, get its port,
read its console log, stop it. The board itself runs in its own process
(`python -m hil.boards.bridge`), so a test can kill the board without killing itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class VirtualBoardError(RuntimeError):
    pass


class VirtualBoard:
    """The MicroPython unix port behind a pseudo-terminal; `flash` plays the board's flash."""

    def __init__(self, flash: Path, heap: str = "128k", workdir: Path | None = None) -> None:
        self.flash = Path(flash)
        self.flash.mkdir(parents=True, exist_ok=True)
        self.heap = heap
        self.workdir = Path(workdir) if workdir else self.flash.parent
        self.workdir.mkdir(parents=True, exist_ok=True)
        stem = self.flash.name or "board"
        self.port_file = self.workdir / f"{stem}.port"
        self.console_log = self.workdir / f"{stem}.console.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = ""

    def start(self, timeout: float = 15.0) -> VirtualBoard:
        self.port_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hil.boards.bridge",
                str(self.flash),
                self.heap,
                str(self.port_file),
                str(self.console_log),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if self.process.poll() is not None:
                raise VirtualBoardError(f"virtual board exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise VirtualBoardError(f"virtual board gave no port within {timeout} s")
            time.sleep(0.02)
        self.port = self.port_file.read_text().strip()
        return self

    def console(self) -> str:
        """Everything the board printed on its console so far."""
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_console(self, text: str, timeout: float = 60.0, after: int = 0) -> bool:
        """Wait until `text` appears in the console log (past offset `after`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.console()[after:]:
                return True
            time.sleep(0.05)
        return False

    def wake(self) -> None:
        """Wake the board from deep sleep now, as a pin interrupt does."""
        self._signal(signal.SIGUSR1)

    def power_cycle(self) -> None:
        """Cut the power and restore it: the program restarts and RTC memory is lost."""
        self._signal(signal.SIGUSR2)

    def _signal(self, sig: int) -> None:
        if not self.running():
            raise VirtualBoardError("virtual board is not running")
        assert self.process is not None
        self.process.send_signal(sig)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def freeze(self) -> None:
        """Stop the board's processes where they are (SIGSTOP to its process group): the
        board answers nothing more, so whatever the host was doing with it stays undone."""
        if not self.running():
            raise VirtualBoardError("virtual board is not running")
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:  # a frozen board takes its SIGTERM only once it runs again
            os.killpg(self.process.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
