"""`urbansense`: one command for technicians, operations staff and test rigs.

Each command group is a module exposing `register(subparsers)`; it adds its parser and
sets `func` (taking the parsed args, returning an exit code). Exit code 0 only on success.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from cli.errors import CommandError

# Command groups, in the order `--help` lists them.
COMMAND_MODULES = [
    "cli.demo",
    "cli.decode",
    "cli.edge",
    "cli.query",
    "cli.alarms",
    "cli.db",
    "cli.report",
    "cli.hil",
    "cli.node",
    "cli.sim",
    "cli.creds",
]


def _version() -> str:
    try:
        return version("urbansense")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urbansense",
        description="City sensing network: node firmware tools, the edge aggregator, "
        "operations queries and test rigs.",
    )
    parser.add_argument("--version", action="version", version=f"urbansense {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if not (argv if argv is not None else sys.argv[1:]) else 2
    try:
        return int(func(args) or 0)
    except CommandError as err:
        print(f"urbansense: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("urbansense: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`urbansense query ... | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
