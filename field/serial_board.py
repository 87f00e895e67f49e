"""A board on a serial port (a real ESP32 on /dev/ttyUSB0, or a virtual board's pty),
driven through its raw REPL with mpremote's transport.

Every failure a technician can meet becomes a BoardError with one line that says what to do:
no such port, port in use, no permission, a board that does not answer."""

from __future__ import annotations

import ast
import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterator

import serial
from mpremote import transport_serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

READ_TIMEOUT_S = 1.0


def _quiet(*args: object, **kwargs: object) -> None:
    """mpremote's transport prints the raw bytes it read before raising on a board that does
    not answer; a BoardError says it in one line instead. Replacing the module's `print`
    (rather than swapping sys.stdout around each call) is safe with boards in several threads."""


transport_serial.print = _quiet  # type: ignore[attr-defined]
WRITE_CHUNK = 512  # bytes per raw-REPL write: small enough for an ESP32's heap


class BoardError(Exception):
    """A board problem to report in one line."""


def check_port(port: str) -> None:
    """Raise BoardError unless `port` exists and this process can have it to itself."""
    if not os.path.exists(port):
        raise BoardError(
            f"port {port} does not exist: is the board plugged in? "
            "(list ports with: python -m serial.tools.list_ports)"
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


class SerialBoard:
    """One open connection to a board's REPL."""

    def __init__(self, port: str, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        check_port(port)
        try:
            # A read timeout: on a pty mpremote reads without one and would wait forever
            # for a silent board; with it, its own overall timeouts apply.
            self.transport = SerialTransport(port, baudrate=115200, exclusive=True, timeout=READ_TIMEOUT_S)
        except TransportError as err:
            raise BoardError(f"cannot open {port}: {err}") from None

    # -- REPL
    def enter_raw_repl(self, soft_reset: bool) -> None:
        """Interrupt the running program and enter the raw REPL. A soft reset gives a clean
        interpreter (for flashing); without it the node's state stays for inspection."""
        try:
            self.transport.enter_raw_repl(soft_reset=soft_reset, timeout_overall=self.timeout)
        except (TransportError, OSError) as err:
            raise BoardError(
                f"the board on {self.port} does not answer (no MicroPython REPL "
                f"within {self.timeout:g} s): is MicroPython flashed on it? (a "
                "duty-cycled node may be in deep sleep: press its reset button)"
            ) from err

    def exec(self, code: str) -> str:
        try:
            return self.transport.exec(code).decode(errors="replace")
        except TransportExecError as err:
            last = err.error_output.strip().splitlines()[-1:] or ["error"]
            raise BoardError(f"the board on {self.port} failed: {last[0]}") from None
        except (TransportError, OSError) as err:
            raise BoardError(f"lost the board on {self.port}: {err}") from None

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
        except (TransportError, OSError) as err:
            raise BoardError(f"writing {path} to the board on {self.port} failed: {err}") from None

    def _unless_missing(self, action: str, path: str, call: Callable[[], bytes]) -> bytes | None:
        """call(), or None if the board has no file at `path`; other failures: BoardError."""
        try:
            return bytes(call())
        except OSError as err:
            if err.errno == errno.ENOENT:
                return None
            raise BoardError(f"{action} {path} on the board on {self.port} failed: {err}") from None
        except TransportError as err:
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
                raise BoardError(f"lost the board on {self.port}: {err}") from None
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
