"""The virtual board answers mpremote and pyserial as a real board does: raw REPL (raw-paste
and the plain fallback), files, Ctrl-C into the REPL, soft reset as a new interpreter that
runs main.py again, deep sleep and reboot exit codes, and one user of the port at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import serial
from mpremote.transport_serial import SerialTransport

from field.serial_board import BoardError, SerialBoard, check_port
from tests.support.cli import URBANSENSE
from tests.support.waiting import eventually

# A program that counts its runs in flash, leaves a global for the REPL to see, and loops.
LOOPING_MAIN = """\
import time
with open('runs', 'a') as f:
    f.write('run\\n')
alive = 42
print('main running')
while True:
    time.sleep(0.05)
"""


def mpremote(port: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "mpremote"
    return subprocess.run([str(exe), "connect", port, *args], capture_output=True, text=True, timeout=60)


def runs(board) -> int:
    path = board.flash / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_mpremote_interrupts_main_and_soft_reset_restarts_it(boards, tmp_path):
    flash = tmp_path / "board" / "flash"
    flash.mkdir(parents=True)
    (flash / "main.py").write_text(LOOPING_MAIN)
    board = boards()
    assert board.wait_console("main running"), board.console()
    assert runs(board) == 1

    # `resume`: Ctrl-C into the REPL of the same interpreter, main.py's globals still there.
    proc = mpremote(board.port, "resume", "exec", "print(alive + 1)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "43"
    assert "KeyboardInterrupt" in board.console()

    # Without `resume`, mpremote soft-resets: a new interpreter, in the raw REPL, main.py not run.
    proc = mpremote(board.port, "exec", "print('alive' in globals())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert runs(board) == 1

    # A soft reset from the friendly REPL (Ctrl-D) runs main.py again, as after power-on.
    with SerialBoard(board.port) as sb:
        sb.enter_raw_repl(soft_reset=False)
        sb.restart_program()
    assert eventually(lambda: runs(board) == 2), board.console()


def test_files_and_hashes_through_mpremote(boards, tmp_path):
    board = boards()
    data = os.urandom(3000)
    local = tmp_path / "blob.bin"
    local.write_bytes(data)
    proc = mpremote(board.port, "fs", "cp", str(local), ":blob.bin", "+", "fs", "sha256sum", ":blob.bin")
    assert proc.returncode == 0, proc.stderr
    import hashlib

    assert hashlib.sha256(data).hexdigest() in proc.stdout
    assert (board.flash / "blob.bin").read_bytes() == data


def test_errors_come_back_as_errors(boards):
    board = boards()
    proc = mpremote(board.port, "exec", "raise ValueError('boom')")
    assert proc.returncode != 0
    assert "ValueError: boom" in proc.stdout + proc.stderr


def test_plain_raw_repl_without_raw_paste(boards):
    board = boards()
    transport = SerialTransport(board.port)
    try:
        transport.use_raw_paste = False  # what mpremote falls back to on boards without it
        transport.enter_raw_repl(soft_reset=True)
        out = transport.exec("x = 6 * 7\nprint(x)")
        assert out.strip() == b"42"
        transport.exit_raw_repl()
    finally:
        transport.close()


def test_deep_sleep_and_reboot_exit_codes_restart_the_program(boards, tmp_path):
    flash = tmp_path / "board" / "flash"
    flash.mkdir(parents=True)
    # First run: sleep 300 ms (exit 75), second: reboot (exit 76), then stay up.
    (flash / "main.py").write_text("""\
import sys, json
with open('runs', 'a') as f:
    f.write('run\\n')
n = len(open('runs').read().splitlines())
if n == 1:
    with open('rtc.json', 'w') as f:
        f.write(json.dumps({'sleep_ms': 300}))
    print('deepsleep 300')
    sys.exit(75)
if n == 2:
    sys.exit(76)
print('up after', n)
""")
    board = boards()
    assert board.wait_console("up after 3"), board.console()


def test_pin_wake_and_power_cycle(boards, tmp_path):
    flash = tmp_path / "board" / "flash"
    flash.mkdir(parents=True)
    (flash / "main.py").write_text("""\
import sys, os, json
with open('runs', 'a') as f:
    f.write('run %s\\n' % os.getenv('URBANSENSE_WAKE'))
with open('rtc.json', 'w') as f:
    f.write(json.dumps({'sleep_ms': 600000}))
sys.exit(75)
""")
    board = boards()
    assert eventually(lambda: runs(board) == 1)
    board.wake()  # long before the 10 minutes are up
    assert eventually(lambda: runs(board) == 2), board.console()
    assert (board.flash / "runs").read_text().splitlines()[1] == "run pin"
    board.power_cycle()
    assert eventually(lambda: runs(board) == 3), board.console()


def test_port_in_use_is_refused(boards):
    board = boards()
    holder = serial.Serial(board.port, exclusive=True)
    try:
        with pytest.raises(BoardError, match="in use"):
            check_port(board.port)
        proc = mpremote(board.port, "exec", "print(1)")
        assert proc.returncode != 0
    finally:
        holder.close()
    check_port(board.port)  # free again


def test_missing_port_is_named():
    with pytest.raises(BoardError, match="does not exist"):
        check_port("/dev/no-such-port")


def test_silent_port_does_not_answer():
    master, slave = os.openpty()  # a port with no board behind it
    try:
        board = SerialBoard(os.ttyname(slave), timeout=1.5)
        with pytest.raises(BoardError, match="does not answer"):
            board.enter_raw_repl(soft_reset=True)
        board.close()
    finally:
        os.close(master)
        os.close(slave)


def test_hil_board_command_prints_port_and_stops_on_ctrl_c(tmp_path):
    flash = tmp_path / "flash"
    proc = subprocess.Popen(
        [URBANSENSE, "hil", "board", "--virtual", "--flash", str(flash)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("virtual board on /dev/pts/"), line
        port = line.split()[3]
        done = mpremote(port, "exec", "print(sum(range(10)))")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "45"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_while_the_interpreter_starts_lands_in_the_repl(boards, tmp_path):
    flash = tmp_path / "board" / "flash"
    flash.mkdir(parents=True)
    (flash / "main.py").write_text(LOOPING_MAIN)
    board = boards()
    with SerialBoard(board.port, timeout=10) as sb:
        for _ in range(5):
            sb.enter_raw_repl(soft_reset=False)
            sb.restart_program()  # a new interpreter starts; Ctrl-C follows at once
        sb.enter_raw_repl(soft_reset=False)
        assert sb.eval("1 + 1") == 2


def test_output_nobody_reads_does_not_stall_the_board(boards, tmp_path):
    flash = tmp_path / "board" / "flash"
    flash.mkdir(parents=True)
    # 200 KB of console output with the port closed: a UART drops it, the program goes on.
    (flash / "main.py").write_text("for i in range(2000):\n    print('x' * 99)\nopen('done', 'w').close()\n")
    board = boards()
    assert eventually(lambda: (board.flash / "done").exists(), timeout=30), board.console()[-500:]
    # The program may end before the bridge has drained the pty into the console log: wait
    # for the lines themselves (the assertion below says how many came if they did not).
    eventually(lambda: board.console().count("x" * 99) >= 2000, timeout=60)
    assert board.console().count("x" * 99) == 2000  # the console log keeps everything
    with SerialBoard(board.port) as sb:  # and the port still answers afterwards
        sb.enter_raw_repl(soft_reset=False)
        assert sb.eval("2 ** 10") == 1024


def test_board_repl_is_valid_micropython(tmp_path):
    from field.toolchain import compile_file
    from hil.boards.bridge import BOARD_REPL

    proc = compile_file(BOARD_REPL, tmp_path / "board_repl.mpy")
    assert proc.returncode == 0, proc.stderr.decode()
