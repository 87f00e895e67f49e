"""The process behind a virtual board's serial port.

It owns two pseudo-terminals:
- the *port*: the slave end (`/dev/pts/N`) is what mpremote, pyserial or a terminal opens,
  exactly like /dev/ttyUSB0; the bridge holds the master end;
- the *console*: the MicroPython unix port writes to a second pty, whose line discipline
  turns "\\n" into "\\r\\n" as a board's console does, and reads from a pipe, whose
  unread byte count is exact at any moment (a pty's is not: writes reach its queue a little
  later), which the Ctrl-C handling below relies on.
Bytes are copied both ways; the console's output is also appended to a log file. When the
interpreter exits (a soft reset, see board_repl.py), a new one starts in the same flash
folder: that is what a soft reset is. With nobody on the port, output is dropped, as a
UART drops it.

Ctrl-C: as a board's UART interrupt does, it interrupts at once, whatever is still unread:
the bridge sends the interpreter SIGINT (the unix port raises KeyboardInterrupt in whatever
code runs) instead of the byte. The line discipline could signal too (ISIG), but it cannot
tell when no interpreter is there to take it: between a soft reset and the next start, or
when one was already ending (it had read the Ctrl-D of a soft reset). So the bridge watches:
if the interpreter ends without reading a byte sent after the Ctrl-C, it never took it, and
the next interpreter starts in the REPL without running main.py: Ctrl-C at boot. A SIGINT
can also be lost in an interpreter that is just starting (the `micropython` command's own
Python runtime takes it before MicroPython sets its handler): while nothing sent after the
Ctrl-C is read, the bridge signals again every half second.

Signals: SIGTERM/SIGINT power the board off; SIGUSR1 wakes it from deep sleep early (a pin
wake: URBANSENSE_WAKE=pin); SIGUSR2 is a power cycle (RTC memory, rtc.json, is lost).

Python's pty/termios do the work; no library offers a pty-backed MicroPython board.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import subprocess
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

from hil.micropython import interpreter

BOARD_REPL = Path(__file__).resolve().parent / "board_repl.py"
SOFT_RAW = 10  # exit codes of board_repl.py: come back in the raw REPL ...
SOFT_RUN = 11  # ... or run main.py
# Exit codes of the firmware's sim HAL (firmware/README.md, contract 2).
DEEP_SLEEP = 75  # wake after rtc.json's sleep_ms (or at once on SIGUSR1: a pin wake)
REBOOT = 76  # a `reboot` command: start again at once
BAD_CONFIG = 2  # the node refused its config: stay in the REPL so it can be fixed
SIGINT_AGAIN_S = 0.5  # a Ctrl-C not taken yet is signalled again after this
RESTART_PAUSE_S = 0.2  # a program that exits at once must not spin the CPU
MAX_PENDING = 4096  # output held back while the port is full; beyond it a UART would have lost it


def _raw_port(fd: int) -> None:
    """The port side: no echo, no line editing, bytes as they are (pyserial sets the same)."""
    tty.setraw(fd)


def _console_mode(fd: int) -> None:
    """The interpreter's output: "\\n" -> "\\r\\n", nothing else changed (input is a pipe)."""
    attrs = termios.tcgetattr(fd)
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
    iflag &= ~(
        termios.ICRNL
        | termios.INLCR
        | termios.IGNCR
        | termios.IXON
        | termios.IXOFF
        | termios.ISTRIP
        | termios.BRKINT
    )
    oflag |= termios.OPOST | termios.ONLCR
    lflag &= ~(
        termios.ICANON | termios.ECHO | termios.ECHOE | termios.ECHOK | termios.ECHONL | termios.IEXTEN
    )
    lflag &= ~termios.ISIG  # Ctrl-C, Ctrl-\ and Ctrl-Z are no signals here (see above)
    cc = list(cc)
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


class Bridge:
    """One virtual board: a port, a console, and the interpreter behind it."""

    def __init__(self, flash: Path, heap: str = "128k", log_path: Path | None = None) -> None:
        self.flash = Path(flash).resolve()
        self.heap = heap
        self.log_path = log_path
        self.port_master, self.port_slave = os.openpty()
        _raw_port(self.port_slave)
        self.console_master, self.console_slave = os.openpty()
        _console_mode(self.console_slave)
        # The bridge keeps the read end too: input survives from one interpreter to the next.
        self.stdin_r, self.stdin_w = os.pipe()
        for fd in (self.port_master, self.console_master, self.stdin_w):
            os.set_blocking(fd, False)
        self.child: subprocess.Popen[bytes] | None = None
        self.to_console = bytearray()
        self.to_port = bytearray()
        self.boots = 0
        self.wake_at: float | None = None  # asleep until this monotonic time
        self._pin_wake = False
        self._power_cycle = False
        self.interrupt_pending = False  # a Ctrl-C the next interpreter takes at its start
        # After a SIGINT: how many bytes were sent since. Reads are in order, so once fewer than
        # that wait unread, the interpreter read on after the Ctrl-C: it took it.
        self.sigint_unread: int | None = None
        self.sigint_at = 0.0
        self._stop = False
        self._log = open(log_path, "ab") if log_path else None

    @property
    def port(self) -> str:
        return os.ttyname(self.port_slave)

    def _spawn(self, mode: str, pin_wake: bool = False) -> None:
        if mode == "run" and self.interrupt_pending:
            mode = "repl"
        self.interrupt_pending = False
        self.sigint_unread = None
        self.boots += 1
        self.wake_at = None
        self._pin_wake = False
        env = {**os.environ, "MICROPYPATH": f"{self.flash}:{self.flash}/lib"}
        env.pop("URBANSENSE_WAKE", None)
        if pin_wake:
            env["URBANSENSE_WAKE"] = "pin"
        self.child = subprocess.Popen(
            [interpreter(), "-X", f"heapsize={self.heap}", str(BOARD_REPL), mode],
            cwd=self.flash,
            stdin=self.stdin_r,
            stdout=self.console_slave,
            stderr=self.console_slave,
            start_new_session=True,
            env=env,
        )

    def _sleep_ms(self) -> int:
        try:
            with open(self.flash / "rtc.json") as f:
                return int(json.load(f).get("sleep_ms", 0))
        except (OSError, ValueError, AttributeError):
            return 0

    def _reap(self) -> None:
        """Start a new interpreter when the last one ended (a soft reset, a reboot, the end
        of a deep sleep, a crash); a power cycle asked for by SIGUSR2 kills it first."""
        assert self.child is not None
        if self._power_cycle:
            self._power_cycle = False
            if self.child.poll() is None:
                self.child.kill()
                self.child.wait()
            (self.flash / "rtc.json").unlink(missing_ok=True)
            self._write_log(b"\n[virtual board: power cycle]\n")
            self._spawn("run")
            return
        code = self.child.poll()
        if code is None:
            return
        if self.sigint_unread is not None and self._queued() >= self.sigint_unread:
            self.interrupt_pending = True  # it ended without taking the Ctrl-C
        self.sigint_unread = None
        if self.wake_at is None and code == DEEP_SLEEP:
            self.wake_at = time.monotonic() + self._sleep_ms() / 1000
            # A sleeping board hears nothing: what was sent to it is gone at wake-up.
            self._discard_input()
            self.interrupt_pending = False
        if self.wake_at is not None:
            if self._pin_wake or time.monotonic() >= self.wake_at:
                pin, self._pin_wake = self._pin_wake, False
                self._spawn("run", pin_wake=pin)
            return
        if code in (SOFT_RAW, SOFT_RUN):
            self._mark_soft_reset()
        if code == SOFT_RAW:
            self._spawn("raw")
        elif code == BAD_CONFIG:
            self._spawn("repl")
        elif code in (SOFT_RUN, REBOOT) or self.interrupt_pending:
            self._spawn("run")  # "repl" if a Ctrl-C is pending
        elif code == -signal.SIGINT:
            # The SIGINT came before the interpreter could take it as KeyboardInterrupt (it
            # was starting): on a board, Ctrl-C at boot also lands in the REPL.
            self._spawn("repl")
        else:  # a crash or a stray signal: power-cycle after a pause
            self._write_log(f"\n[virtual board: interpreter exited with {code}; restarting]\n".encode())
            time.sleep(RESTART_PAUSE_S)
            self._spawn("run")

    def _mark_soft_reset(self) -> None:
        """A soft reset restarts the interpreter, not the chip (MicroPython docs,
        machine.soft_reset), and a board's reset cause then says so (machine.SOFT_RESET).
        The firmware's sim HAL reads why it started from rtc.json, the board's RTC memory,
        and marks each boot there as one a kill ends (a crash, the watchdog: "hard"): a
        Ctrl-C that stops the program after that mark and before the program records the
        stop itself (while the node is still being made) would otherwise be taken for a
        crash. A soft reset adds the sim HAL's own soft marker to a boot so marked; a wake
        from deep sleep the Ctrl-C caught before the mark stays one, as the sim HAL reads
        it (firmware/hal/sim.py)."""
        path = self.flash / "rtc.json"
        try:
            with open(path) as f:
                rtc = json.load(f)
        except (OSError, ValueError):
            return  # no RTC memory (a power-on boot not marked yet), or garbage: as it is
        if not isinstance(rtc, dict) or rtc.get("sleep_ms") is not None or rtc.get("soft"):
            return
        rtc["soft"] = True
        # Here, not at the top: the sim's module costs every board's start a twentieth of
        # a second, and only a soft reset needs it.
        from hil.sim import write_json_atomic

        write_json_atomic(path, rtc)

    def wake(self, *_: object) -> None:
        self._pin_wake = True

    def power_cycle(self, *_: object) -> None:
        self._power_cycle = True

    def _write_log(self, data: bytes) -> None:
        if self._log:
            self._log.write(data)
            self._log.flush()

    def stop(self, *_: object) -> None:
        self._stop = True

    def run(self, on_ready: Callable[[str], None] | None = None) -> None:
        self._spawn("run")
        if on_ready:
            on_ready(self.port)
        try:
            self._loop()
        finally:
            self.close()

    def _loop(self) -> None:
        while not self._stop:
            want_write = []
            if self.to_console:
                want_write.append(self.stdin_w)
            if self.to_port:
                want_write.append(self.port_master)
            try:
                readable, writable, _ = select.select(
                    [self.port_master, self.console_master], want_write, [], 0.1
                )
            except InterruptedError:
                continue
            if self.port_master in readable:
                data = self._read(self.port_master)
                if self.wake_at is None:  # a board in deep sleep hears nothing
                    self.to_console += data
            if self.console_master in readable:
                data = self._read(self.console_master)
                self._write_log(data)
                self.to_port += data
                self._flush(self.port_master, self.to_port)
                if len(self.to_port) > MAX_PENDING:  # nobody reads the port: a UART drops it
                    del self.to_port[:-MAX_PENDING]
            if self.to_console:
                self._feed_console()
            if self.sigint_unread is not None:
                self._follow_sigint()
            if self.port_master in writable:
                self._flush(self.port_master, self.to_port)
            self._reap()

    def _queued(self) -> int:
        """Bytes written to the console that the interpreter has not read yet."""
        return int.from_bytes(fcntl.ioctl(self.stdin_r, termios.FIONREAD, b"\0\0\0\0"), "little", signed=True)

    def _follow_sigint(self) -> None:
        """Forget a SIGINT once it was taken; send it again while it seems lost."""
        assert self.sigint_unread is not None and self.child is not None
        if self._queued() < self.sigint_unread:
            self.sigint_unread = None  # it read on after the Ctrl-C: it took it
        elif (
            self.sigint_unread
            and time.monotonic() - self.sigint_at > SIGINT_AGAIN_S
            and self.child.poll() is None
        ):
            os.kill(self.child.pid, signal.SIGINT)
            self.sigint_at = time.monotonic()

    def _discard_input(self) -> None:
        self.to_console.clear()
        os.set_blocking(self.stdin_r, False)
        try:
            while os.read(self.stdin_r, 65536):
                pass
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(self.stdin_r, True)

    def _feed_console(self) -> None:
        """Write what the port sent, in order; a Ctrl-C becomes SIGINT (see above)."""
        while self.to_console:
            if not self.to_console.startswith(b"\x03"):
                cut = self.to_console.find(b"\x03")
                chunk = bytes(self.to_console if cut < 0 else self.to_console[:cut])
                try:
                    sent = os.write(self.stdin_w, chunk)
                except BlockingIOError:
                    return
                del self.to_console[:sent]
                if self.sigint_unread is not None:
                    self.sigint_unread += sent
                if sent < len(chunk):
                    return
                continue
            alive = self.child is not None and self.child.poll() is None
            del self.to_console[:1]
            if alive:
                assert self.child is not None
                os.kill(self.child.pid, signal.SIGINT)
                self.sigint_unread = 0
                self.sigint_at = time.monotonic()
            else:
                self.interrupt_pending = True

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, 4096)
        except BlockingIOError:
            return b""
        except OSError as err:  # EIO: the other side is closed for a moment
            if err.errno == errno.EIO:
                return b""
            raise

    @staticmethod
    def _flush(fd: int, pending: bytearray) -> None:
        try:
            sent = os.write(fd, pending)
        except BlockingIOError:
            return
        del pending[:sent]

    def close(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        for fd in (
            self.port_master,
            self.port_slave,
            self.console_master,
            self.console_slave,
            self.stdin_r,
            self.stdin_w,
        ):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._log:
            self._log.close()


def serve(
    flash: Path, heap: str, log_path: Path | None, on_ready: Callable[[str], None] | None = None
) -> None:
    """Run a virtual board in this process until SIGTERM or SIGINT."""
    bridge = Bridge(flash, heap, log_path)
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    signal.signal(signal.SIGUSR1, bridge.wake)
    signal.signal(signal.SIGUSR2, bridge.power_cycle)
    bridge.run(on_ready)


def main() -> None:
    """`python -m hil.boards.bridge FLASH HEAP PORT_FILE [LOG]`: used by VirtualBoard."""
    import sys

    flash, heap, port_file = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    log = Path(sys.argv[4]) if len(sys.argv) > 4 else None

    def ready(port: str) -> None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(port)
        tmp.replace(port_file)

    serve(flash, heap, log, ready)


if __name__ == "__main__":
    main()
