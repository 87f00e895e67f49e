"""`urbansense decode`: check one payload against protocol v1, as the edge would.

For a technician or an operator holding a payload from `mosquitto_sub -v`: it prints the
normalized message, or the machine-readable reason the edge would quarantine it for."""

from __future__ import annotations

import argparse
import sys
import time

from cli.errors import CommandError
from cli.output import add_format_flags, print_json, print_table
from protocols.decoder import decode
from protocols.errors import ProtocolError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decode",
        help="check one payload against protocol v1",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    p.add_argument("topic", help="the MQTT topic the payload came on")
    p.add_argument(
        "payload", nargs="?", default="-", help="file holding the payload, or - for standard input (default)"
    )
    add_format_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.payload == "-":
            payload = sys.stdin.buffer.read()
        else:
            with open(args.payload, "rb") as f:
                payload = f.read()
    except OSError as err:
        raise CommandError(f"cannot read {args.payload}: {err.strerror}") from None
    try:
        message = decode(args.topic, payload, int(time.time() * 1000))
    except ProtocolError as err:
        if args.json:
            print_json({"valid": False, "reason": err.reason, "detail": err.detail})
        else:
            print(f"invalid: {err.reason}: {err.detail}")
        return 1
    if args.json:
        print_json({"valid": True, "message": message})
    else:
        rows = [(k, message[k]) for k in message if k != "readings"]
        for i, reading in enumerate(message.get("readings", [])):
            rows.append((f"reading {i}", reading))
        print_table(("key", "value"), rows, title="valid v1 message")
    return 0
