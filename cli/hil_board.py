"""`urbansense hil board`: start a virtual board and print the port to use."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.errors import CommandError
from hil.boards.bridge import serve
from hil.micropython import MicroPythonMissing, interpreter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "board",
        help="run a virtual board (MicroPython behind a serial port)",
        description="Run a virtual board: the MicroPython unix port behind a "
        "pseudo-terminal, driven like an ESP32 on /dev/ttyUSB0 "
        "(mpremote, pyserial, urbansense node). Runs until Ctrl-C.",
    )
    p.add_argument(
        "--virtual",
        action="store_true",
        required=True,
        help="a virtual board (the only kind this command starts)",
    )
    p.add_argument(
        "--flash",
        type=Path,
        default=Path("virtual-board"),
        help="folder that plays the board's flash (default: ./virtual-board)",
    )
    p.add_argument("--heap", default="128k", help="MicroPython heap size (default: 128k)")
    p.add_argument("--log", type=Path, help="also append the console output to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        interpreter()
    except MicroPythonMissing as err:
        raise CommandError(str(err)) from None
    try:
        args.flash.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CommandError(f"cannot use {args.flash} as flash: {err.strerror}") from None

    def ready(port: str) -> None:
        print(f"virtual board on {port} (flash: {args.flash.resolve()})")
        print(f"  e.g. mpremote connect {port} fs ls   |   urbansense node info --port {port}")
        print(
            f"  kill -USR1 {os.getpid()} wakes it from deep sleep (a pin wake); "
            f"kill -USR2 {os.getpid()} is a power cycle"
        )
        print("Ctrl-C stops the board.", flush=True)

    try:
        serve(args.flash, args.heap, args.log, ready)
    except OSError as err:  # no pty left, or an unwritable --log
        raise CommandError(f"cannot start the virtual board: {err}") from None
    print("virtual board stopped", file=sys.stderr)
    return 0
