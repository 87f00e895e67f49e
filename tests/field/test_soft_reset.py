"""A soft reset that lands at the friendly REPL: a Ctrl-C that reaches a board as it
restarts (a knock still on its way to it) leaves it at `>>> ` instead of back in the raw
REPL, as a KeyboardInterrupt at boot does. The flashing transport (field/serial_board.py)
must take it on to the raw REPL, not give the board up as lost.

The board here is a pseudo-terminal answered by a script that speaks the REPL's bytes
(MicroPython's shared/runtime/pyexec.c: Ctrl-A enters the raw REPL with its banner and
`>` prompt, Ctrl-D runs the command and answers `OK`, its output, `\\x04\\x04>`; Ctrl-D on
an empty command is a soft reset). The virtual board cannot be made to take that Ctrl-C at
a chosen moment; the script can."""

from __future__ import annotations

import os
import re
import select
import threading
import tty

import pytest
import serial

from field import serial_board as serial_board_module
from field.serial_board import BoardError, BoardLost, SerialBoard

FRIENDLY = b'MicroPython 3.4.0 on scripted board\r\nType "help()" for more information.\r\n>>> '
RAW = b"raw REPL; CTRL-B to exit\r\n>"


class ScriptedBoard:
    """Answers the REPL's control bytes; after its first soft reset it comes back at the
    friendly REPL (`lands_friendly`) or in the raw REPL, as a board normally does, or
    answers nothing more (`silent_after_reset`)."""

    def __init__(self, lands_friendly: bool, silent_after_reset: bool = False) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.lands_friendly = lands_friendly
        self.silent_after_reset = silent_after_reset
        self.raw = False
        self.command = b""
        self.soft_resets = 0
        self.ctrl_a_after_reset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _answer(self, byte: int) -> bytes:
        if self.silent_after_reset and self.soft_resets:
            return b""
        if byte == 0x01:  # Ctrl-A: (back) into the raw REPL
            self.raw, self.command = True, b""
            if self.soft_resets:
                self.ctrl_a_after_reset += 1
            return b"\r\n" + RAW
        if byte == 0x03:  # Ctrl-C: nothing runs here to interrupt
            return b""
        if byte == 0x04 and self.raw:
            if not self.command:  # a soft reset
                self.soft_resets += 1
                self.raw = not self.lands_friendly
                return b"OK\r\nMPY: soft reboot\r\n" + (FRIENDLY if self.lands_friendly else RAW)
            match = re.fullmatch(rb"print\((\d+)\+1\)", self.command)
            self.command = b""
            output = b"%d\r\n" % (int(match.group(1)) + 1) if match else b""
            return b"OK" + output + b"\x04\x04>"
        if self.raw:
            self.command += bytes([byte])
        return b""

    def _serve(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self.master], [], [], 0.05)
            if not readable:
                continue
            try:
                data = os.read(self.master, 1024)
            except OSError:
                return
            for byte in data:
                reply = self._answer(byte)
                if reply:
                    os.write(self.master, reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def scripted():
    made: list[ScriptedBoard] = []

    def make(lands_friendly: bool, silent_after_reset: bool = False) -> ScriptedBoard:
        made.append(ScriptedBoard(lands_friendly, silent_after_reset))
        return made[-1]

    yield make
    for board in made:
        board.close()


@pytest.mark.parametrize("lands_friendly", [False, True])
def test_a_soft_reset_ends_in_the_raw_repl_with_its_prompt_unread(scripted, lands_friendly):
    board = scripted(lands_friendly)
    with SerialBoard(board.port, timeout=5) as serial_board:
        serial_board.enter_raw_repl(soft_reset=True)
        assert board.soft_resets == 1
        # Taken on to the raw REPL only when the reset left it at the friendly prompt.
        assert board.ctrl_a_after_reset == (1 if lands_friendly else 0)
        # The raw REPL's prompt is left for mpremote's next command, nothing else.
        assert serial_board.transport.serial.read(1) == b">"
        assert serial_board.transport.serial.in_waiting == 0


def test_a_board_silent_after_its_soft_reset_is_lost(scripted):
    board = scripted(lands_friendly=True, silent_after_reset=True)
    with SerialBoard(board.port, timeout=3) as serial_board:
        with pytest.raises(BoardLost, match="did not come back from its soft reset"):
            serial_board.enter_raw_repl(soft_reset=True)


def test_a_port_held_for_a_moment_is_opened_once_it_is_free(scripted, monkeypatch):
    """Another program holding the port for an instant (a tool polling a port name that is
    now this board's) does not fail the connection: the open is tried again."""
    monkeypatch.setattr(serial_board_module, "OPEN_RETRY_FOR_S", 60.0)  # the release below ends it
    board = scripted(lands_friendly=False)
    holder = serial.Serial(board.port, exclusive=True)
    releaser = threading.Timer(0.3, holder.close)
    releaser.start()
    try:
        with SerialBoard(board.port, timeout=5) as connected:
            assert connected.transport.serial.is_open
            assert not holder.is_open  # it was opened after the holder let go, not beside it
    finally:
        releaser.join(10)
        holder.close()


def test_a_port_held_by_another_program_is_one_line(scripted, monkeypatch):
    monkeypatch.setattr(serial_board_module, "OPEN_RETRY_FOR_S", 0.3)
    board = scripted(lands_friendly=False)
    holder = serial.Serial(board.port, exclusive=True)
    try:
        with pytest.raises(BoardError, match="in use by another program"):
            SerialBoard(board.port, timeout=5)
    finally:
        holder.close()
