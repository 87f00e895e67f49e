"""A board on a serial port (a real ESP32 on /dev/ttyUSB0, or a virtual board's pty),
driven through its raw REPL with mpremote's transport.

Reaching the REPL of a node that sleeps most of the time, as esptool's "Connecting..."
retries its sync: Ctrl-C stops a program that is running; while nothing answers, Ctrl-A
goes out every few tens of milliseconds. A sleeping board hears nothing; one that wakes
finds the Ctrl-A waiting in its console when the firmware looks for it (firmware/main.py,
the break-in window at every boot and wake) and stops; its REPL takes the rest and
answers with the raw REPL's banner. Ctrl-C is repeated only once a second: on a virtual
board it is a signal, and one that lands while the interpreter starts kills that start.
When nothing answers within a second, the board is reset through the port's RTS line
where the adapter has one (esptool's hard reset: RTS drives the chip's EN pin on ESP32
boards), and the Ctrl-A catch the boot that follows. A pseudo-terminal (a virtual board)
has no modem lines: there the retries wait for the node's next wake.

Every failure a technician can meet becomes a BoardError with one line that says what to do:
no such port, port in use, no permission, a board that does not answer, a board lost."""

from __future__ import annotations

import ast
import contextlib
import errno
import os
import random
import time
from collections.abc import Callable, Iterator

import serial
from mpremote import transport_serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

READ_TIMEOUT_S = 1.0
# Opening a port that exists is tried again this long, this often (_open).
OPEN_RETRY_FOR_S = 1.0
OPEN_RETRY_EVERY_S = 0.1
# Ctrl-A cadence while the board does not answer: a board booting from reset or deep sleep
# takes longer than this to reach the firmware's break-in window (firmware/main.py), so one
# is waiting there when it looks.
BREAK_IN_EVERY_S = 0.04
CTRL_C_EVERY_S = 1.0
# Several Ctrl-A a knock: each the REPL answers with a banner (the sync drops them), and a
# raw-paste transfer cut off mid-way fills its window, and says so, sooner.
KNOCK = b"\x01" * 4
# Ctrl-C alone first: an awake node answers at once, and a reset would erase the reset cause
# `node info` shows.
RESET_AFTER_S = 1.0
RESET_PULSE_S = 0.1  # how long esptool's hard reset holds EN low
RAW_BANNER = b"raw REPL; CTRL-B to exit"


def _quiet(*args: object, **kwargs: object) -> None:
    """mpremote's transport prints the raw bytes it read before raising on a board that does
    not answer; a BoardError says it in one line instead. Replacing the module's `print`
    (rather than swapping sys.stdout around each call) is safe with boards in several threads."""


transport_serial.print = _quiet  # type: ignore[attr-defined]
WRITE_CHUNK = 512  # bytes per raw-REPL write: small enough for an ESP32's heap


class BoardError(Exception):
    """A board problem to report in one line."""


class BoardLost(BoardError):
    """The port failed under us (the cable pulled, the board gone) or the board stopped
    answering mid-command: what was being written may be half there."""


def list_ports() -> list[dict[str, str]]:
    """The serial ports this machine has (USB adapters and boards), as pyserial sees them.
    A virtual board's pseudo-terminal is not among them: `hil board` prints its port."""
    from serial.tools import list_ports as pyserial_ports

    return [
        {
            "port": p.device,
            "description": p.description if p.description != "n/a" else "",
            "usb": f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "",
            "serial_number": p.serial_number or "",
        }
        for p in sorted(pyserial_ports.comports(), key=lambda p: p.device)
    ]


def check_port(port: str) -> None:
    """Raise BoardError unless `port` exists and this process can have it to itself."""
    if not os.path.exists(port):
        raise BoardError(
            f"port {port} does not exist: is the board plugged in? (list ports with: urbansense node ports)"
        )
    try:
        probe = serial.Serial(port, exclusive=True)
    except serial.SerialException as err:
        code = err.errno if isinstance(err.errno, int) else None
        text = str(err)
        if code in (errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
            raise BoardError(
                f"port {port} is in use by another program (close mpremote, screen or another urbansense)"
            ) from None
        if code == errno.EACCES or "Permission denied" in text:
            raise BoardError(
                f"no permission to open {port} (add yourself to the dialout group and log in again)"
            ) from None
        raise BoardError(f"cannot open {port}: {text}") from None
    probe.close()


def _open(port: str) -> SerialTransport:
    """The port, to this process alone. A port that exists can fail to open for a moment:
    a board with native USB comes back under the same name after its reset a little
    later, and another program can hold the port for an instant (a port listing, a
    tool polling it), which is how pseudo-terminals of boards gone and numbers reused
    met here. So an open that fails is tried again for about a second; a port missing,
    without permission or held for longer fails with the same one line as ever."""
    deadline = time.monotonic() + OPEN_RETRY_FOR_S
    while True:
        try:
            check_port(port)
            # A read timeout: on a pty mpremote reads without one and would wait forever
            # for a silent board; with it, its own overall timeouts apply.
            return SerialTransport(port, baudrate=115200, exclusive=True, timeout=READ_TIMEOUT_S)
        except (BoardError, TransportError) as err:
            if not os.path.exists(port) or time.monotonic() >= deadline:
                if isinstance(err, BoardError):
                    raise
                raise BoardError(f"cannot open {port}: {err}") from None
        time.sleep(OPEN_RETRY_EVERY_S)


class SerialBoard:
    """One open connection to a board's REPL. `progress(dots)` is called while the board
    does not answer yet, about once a second, for a "Connecting..." line."""

    def __init__(
        self, port: str, timeout: float = 10.0, progress: Callable[[int], None] | None = None
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.progress = progress
        self.was_reset = False  # this connection reset the board to reach its REPL
        self.can_reset: bool | None = None  # whether the port has modem lines (None: not tried)
        self.transport = _open(port)

    # -- REPL
    def enter_raw_repl(self, soft_reset: bool) -> None:
        """Interrupt the running program and enter the raw REPL. A soft reset gives a clean
        interpreter (for flashing); without it the node's state stays for inspection."""
        self._break_in()  # in the raw REPL now, its prompt not read yet
        # mpremote's enter_raw_repl would send Ctrl-C again, a signal on a virtual board
        # that can land in the middle of the REPL's own answer: the soft reset is done here.
        try:
            if soft_reset:
                self.transport.serial.write(b"\x04")
                answer = self.transport.read_until(1, b"soft reboot\r\n", timeout_overall=self.timeout)
                if not answer.endswith(b"soft reboot\r\n"):
                    raise BoardLost(f"the board on {self.port} did not come back from its soft reset")
                self._back_in_raw_repl()
        except (serial.SerialException, OSError) as err:
            raise BoardLost(f"lost the board on {self.port}: {err}") from None
        self.transport.in_raw_repl = True

    def _back_in_raw_repl(self) -> None:
        """After a soft reset from the raw REPL the board comes back in it. A Ctrl-C that
        reaches the board as it restarts (a knock still on its way) leaves it at the friendly
        REPL's prompt instead, as a KeyboardInterrupt at boot does: Ctrl-A takes it on to
        the raw REPL then. Read a byte at a time, so the raw prompt after the banner stays
        unread for mpremote's next command."""
        ending = RAW_BANNER + b"\r\n"
        ser = self.transport.serial
        heard = b""
        asked = False
        deadline = time.monotonic() + self.timeout
        while not heard.endswith(ending):
            if time.monotonic() > deadline:
                raise BoardLost(f"the board on {self.port} did not come back from its soft reset")
            heard = (heard + ser.read(1))[-512:]
            if not asked and heard.endswith(b">>> "):
                ser.write(b"\x01")
                asked = True

    def _break_in(self) -> None:
        """Knock (Ctrl-C now and then, Ctrl-A between) until the raw REPL's banner answers;
        reset the board through RTS if that does not reach it within a second."""
        started = time.monotonic()
        heard = b""
        dots = 0
        ctrl_c_at = -CTRL_C_EVERY_S
        paste_ended = False
        try:
            while RAW_BANNER not in heard:
                waited = time.monotonic() - started
                if waited >= self.timeout:
                    raise BoardError(self._no_answer())
                if self.progress and waited >= dots:
                    self.progress(dots)
                    dots += 1
                if waited >= RESET_AFTER_S and self.can_reset is None:
                    self.can_reset = self._pulse_reset()
                    self.was_reset = self.can_reset
                knock = KNOCK
                if waited - ctrl_c_at >= CTRL_C_EVERY_S:
                    knock, ctrl_c_at = b"\x03" + KNOCK, waited
                self.transport.serial.write(knock)
                heard = (heard + self._read_for(BREAK_IN_EVERY_S))[-512:]
                if not paste_ended and b"\x01" in heard and RAW_BANNER not in heard:
                    # Raw-paste flow control: a command was cut off mid-transfer (the last
                    # run was interrupted) and the board still takes bytes as its code. On a
                    # board Ctrl-C aborts the paste (pyexec.c); Ctrl-D ends it on any REPL.
                    self.transport.serial.write(b"\x04")
                    paste_ended = True
            self._sync()
        except (serial.SerialException, OSError) as err:
            raise BoardLost(f"lost the board on {self.port}: {err}") from None

    def _sync(self) -> None:
        """The knocks still on their way get their answers (more banners) before the answer
        to one command sent after them: read up to that answer, and what comes next from
        the board is what the next command asks for."""
        number = random.randrange(10**6, 10**7)
        self.transport.serial.write(b"\x01print(%d+1)\x04" % number)
        # Up to the answer's end, byte by byte: the raw REPL's prompt after it stays unread,
        # for mpremote's next exec.
        answer = self.transport.read_until(
            1, b"OK%d\r\n\x04\x04" % (number + 1), timeout_overall=self.timeout
        )
        if not answer.endswith(b"\x04\x04"):
            raise BoardLost(f"the board on {self.port} answered, then stopped answering")

    def _no_answer(self) -> str:
        tried = f"no MicroPython REPL within {self.timeout:g} s of Ctrl-C and Ctrl-A"
        if self.was_reset:
            return (
                f"the board on {self.port} does not answer ({tried}, though it was reset through "
                "the port's RTS line): is MicroPython on it? A board without MicroPython needs "
                "--image (ESP32) or its UF2 file (Pico W)"
            )
        return (
            f"the board on {self.port} does not answer ({tried}; the port has no reset line): a "
            "duty-cycled node answers at its next wake: give a --timeout longer than its "
            "interval, or press its reset button (a virtual board: kill -USR1 its PID); "
            "if it never answers, MicroPython may be missing"
        )

    def _pulse_reset(self) -> bool:
        """Reset the chip as esptool's hard reset does: RTS low pulls EN low while DTR stays
        released (GPIO0 high: the program boots, not the ROM loader). False when the port
        has no modem lines: a pseudo-terminal answers ENOTTY, some adapters EINVAL."""
        ser = self.transport.serial
        try:
            ser.dtr = False
            ser.rts = True
            time.sleep(RESET_PULSE_S)
            ser.rts = False
        except OSError as err:
            if err.errno in (errno.ENOTTY, errno.EINVAL):
                return False
            raise
        return True

    def _read_for(self, seconds: float) -> bytes:
        """What the board sends within `seconds`."""
        ser = self.transport.serial
        end = time.monotonic() + seconds
        got = b""
        while True:
            waiting = ser.in_waiting
            if waiting:
                got += ser.read(waiting)
            left = end - time.monotonic()
            if left <= 0:
                return got
            time.sleep(min(0.01, left))

    def exec(self, code: str) -> str:
        try:
            return self.transport.exec(code).decode(errors="replace")
        except TransportExecError as err:
            last = err.error_output.strip().splitlines()[-1:] or ["error"]
            raise BoardError(f"the board on {self.port} failed: {last[0]}") from None
        except (TransportError, OSError) as err:
            raise BoardLost(f"lost the board on {self.port}: {err}") from None

    def eval(self, expression: str) -> object:
        """The value of a Python literal expression evaluated on the board."""
        text = self.exec(f"print(repr({expression}))").strip()
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise BoardError(f"the board on {self.port} gave an unreadable answer: {text[:80]!r}") from None

    # -- files
    def mkdirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        self.exec(
            "import os\n"
            "for p in %r:\n try:\n  os.mkdir(p)\n except OSError:\n  pass"
            % ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        )

    def write_file(self, path: str, data: bytes) -> None:
        try:
            self.transport.fs_writefile(path, data, chunk_size=WRITE_CHUNK)
        except (TransportError, serial.SerialException) as err:
            raise BoardLost(f"lost the board on {self.port} while writing {path}: {err}") from None
        except OSError as err:  # the board's own file error, e.g. its flash is full
            raise BoardError(f"writing {path} to the board on {self.port} failed: {err}") from None

    def _unless_missing(self, action: str, path: str, call: Callable[[], bytes]) -> bytes | None:
        """call(), or None if the board has no file at `path`; other failures: BoardError."""
        try:
            return bytes(call())
        except (TransportError, serial.SerialException) as err:
            raise BoardLost(f"lost the board on {self.port} while {action} {path}: {err}") from None
        except OSError as err:
            if err.errno == errno.ENOENT:
                return None
            raise BoardError(f"{action} {path} on the board on {self.port} failed: {err}") from None

    def read_file(self, path: str) -> bytes | None:
        """The file's bytes, or None if the board has no such file."""
        return self._unless_missing(
            "reading", path, lambda: self.transport.fs_readfile(path, chunk_size=WRITE_CHUNK)
        )

    def remove(self, path: str) -> None:
        self.exec("import os\ntry:\n os.remove(%r)\nexcept OSError:\n pass" % path)

    def sha256(self, path: str) -> str | None:
        """The sha256 of a file as the board computes it, or None if it has no such file."""
        digest = self._unless_missing("hashing", path, lambda: self.transport.fs_hashfile(path, "sha256"))
        return None if digest is None else digest.hex()

    # -- running the program
    def restart_program(self) -> None:
        """Leave the raw REPL and soft-reset from the friendly REPL: the board runs main.py,
        as after power-on (machine.reset() would drop the USB connection of some boards)."""
        self.transport.exit_raw_repl()
        time.sleep(0.05)
        self.transport.serial.write(b"\x04")

    def console_lines(self, until: float) -> Iterator[str]:
        """Lines the board prints, until the monotonic time `until` (or the caller stops)."""
        ser = self.transport.serial
        pending = b""
        while time.monotonic() < until:
            try:
                waiting = ser.in_waiting
                chunk = ser.read(waiting) if waiting else b""
            except (serial.SerialException, OSError) as err:
                raise BoardLost(f"lost the board on {self.port}: {err}") from None
            if not chunk:
                yield ""  # nothing new: lets the caller check other things
                time.sleep(0.05)
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace").strip("\r")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.transport.in_raw_repl:
                self.transport.exit_raw_repl()
        with contextlib.suppress(Exception):
            self.transport.close()

    def __enter__(self) -> SerialBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
