# The console of a virtual board. This file runs inside the MicroPython unix port (never
# under CPython), started by hil/boards/bridge.py with the board's flash folder as its
# working folder, and speaks what a real board's console speaks (micropython's
# shared/runtime/pyexec.c), so mpremote and pyserial cannot tell it from an ESP32:
#   - at power-on and after a soft reset from the friendly REPL: boot.py, then main.py,
#     then the friendly REPL (">>> "); mode "repl" (after main.py refused to run) goes
#     straight to the friendly REPL;
#   - Ctrl-A: the raw REPL ("raw REPL; CTRL-B to exit\n>"); code up to Ctrl-D, answer
#     "OK", the output, \x04, the error, \x04, ">"; raw-paste mode (\x05A\x01) with flow
#     control; Ctrl-D on an empty command is a soft reset that comes back in the raw REPL
#     without running main.py;
#   - Ctrl-C arrives as SIGINT (the bridge turns the byte into the signal), which the
#     unix port raises as KeyboardInterrupt wherever the program is.
# Line ends are written as "\n": the console pty adds the "\r" as a board does.
# A soft reset ends this process with an exit code that tells the bridge how to come back
# (SOFT_RAW or SOFT_RUN): a new interpreter is what a soft reset means.
# The unix port has no input editing and the friendly REPL here takes one line at a time.
import gc
import sys

SOFT_RAW = 10
SOFT_RUN = 11
RAW_BANNER = b"raw REPL; CTRL-B to exit\n"
PASTE_WINDOW = 128  # bytes the host may send before waiting for \x01 (two bytes: 0x80 0x00)

stdin = sys.stdin.buffer
stdout = sys.stdout.buffer
ns = {"__name__": "__main__"}


def out(data):
    stdout.write(data)


def read_byte():
    # Ctrl-C is a signal here, not a byte: report it as the byte it was.
    try:
        b = stdin.read(1)
    except KeyboardInterrupt:
        return 3
    if not b:
        sys.exit(0)  # the bridge closed the console: power off
    return b[0]


def soft_reset(code):
    out(b"MPY: soft reboot\n")
    sys.exit(code)


def run_file(name):
    try:
        f = open(name)
    except OSError:
        return
    src = f.read()
    f.close()
    try:
        exec(compile(src, name, "exec"), ns)
    except SystemExit as e:
        # The firmware's sim HAL ends the process with a code that means something to its
        # supervisor (75 deep sleep, 76 reboot, 2 bad config: firmware/README.md), and the
        # bridge is that supervisor. sys.exit() alone is a soft reset, as on a board.
        code = e.args[0] if e.args else 0
        if code:
            sys.exit(code)
        soft_reset(SOFT_RUN)
    except BaseException as e:
        sys.print_exception(e, sys.stdout)
    gc.collect()


def execute(code, raw):
    # One raw-REPL command: output, \x04, error text, \x04 (as pyexec does).
    try:
        exec(compile(bytes(code).decode(), "<stdin>", "exec"), ns)
        if raw:
            out(b"\x04\x04")
        return
    except SystemExit:
        if raw:
            out(b"\x04\x04")
        soft_reset(SOFT_RUN)
    except BaseException as e:
        if raw:
            out(b"\x04")
        sys.print_exception(e, sys.stdout)
        if raw:
            out(b"\x04")


def raw_paste():
    out(b"R\x01" + bytes((PASTE_WINDOW & 0xFF, PASTE_WINDOW >> 8)))
    code = bytearray()
    got = 0
    while True:
        c = read_byte()
        if c == 4:
            out(b"\x04")  # end of data acknowledged
            return code
        code.append(c)
        got += 1
        if got == PASTE_WINDOW:
            got = 0
            out(b"\x01")  # room for one more window


def raw_repl():
    out(RAW_BANNER)
    while True:
        out(b">")
        line = bytearray()
        while True:
            c = read_byte()
            if c == 1:
                if line == b"\x05A":
                    execute(raw_paste(), True)
                    break
                out(RAW_BANNER)  # Ctrl-A again: restart the raw REPL
                line = bytearray()
                out(b">")
            elif c == 2:
                out(b"\n")
                return "friendly"
            elif c == 3:
                line = bytearray()
            elif c == 4:
                out(b"OK")
                if not line:
                    out(b"\n")
                    soft_reset(SOFT_RAW)
                execute(line, True)
                break
            else:
                line.append(c)


def eval_line(line):
    try:
        code = compile(line, "<stdin>", "single")
    except SyntaxError as e:
        sys.print_exception(e, sys.stdout)
        return
    try:
        exec(code, ns)
    except SystemExit:
        soft_reset(SOFT_RUN)
    except BaseException as e:
        sys.print_exception(e, sys.stdout)


def friendly_repl():
    out(
        b"MicroPython " + sys.version.encode() + b" on virtual board (unix port)\n"
        b'Type "help()" for more information.\n>>> '
    )
    line = bytearray()
    while True:
        c = read_byte()
        if c == 1:
            out(b"\n")
            return "raw"
        if c == 2:
            return "friendly"
        if c == 3:
            line = bytearray()
            out(b"\n>>> ")
        elif c == 4:
            if not line:
                out(b"\n")
                soft_reset(SOFT_RUN)
        elif c == 13 or c == 10:
            out(b"\n")
            if line:
                eval_line(bytes(line).decode())
                line = bytearray()
            out(b">>> ")
        elif c == 8 or c == 127:
            if line:
                line.pop()
                out(b"\x08 \x08")
        else:
            line.append(c)
            out(bytes((c,)))


def main():
    # A real board's path: its flash root and /lib; not this file's folder.
    root = __import__("os").getcwd()
    sys.path[:] = ["", root, root + "/lib", ".frozen"]
    mode = sys.argv[1] if len(sys.argv) > 1 else "run"
    try:
        if mode != "repl":
            run_file("boot.py")
        if mode == "run":
            run_file("main.py")
    except KeyboardInterrupt as e:
        sys.print_exception(e, sys.stdout)
    while True:
        try:
            mode = raw_repl() if mode == "raw" else friendly_repl()
        except KeyboardInterrupt:
            pass


main()
