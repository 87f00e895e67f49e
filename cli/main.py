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

# The top-level commands each module registers, in the order `--help` lists the modules.
# A command line that names one loads only its module: all of them (the rig's scenario
# models, the site PKI's cryptography, the operations questions...) took most of a second
# at every start, for a technician's `urbansense node info` as much as for `--help`.
# `--help`, no command or an unknown one load them all. tests/test_cli.py checks this table
# against what the modules register.
COMMANDS: dict[str, str] = {
    "demo": "cli.demo",
    "decode": "cli.decode",
    "edge": "cli.edge",
    "nodes": "cli.edge",
    "query": "cli.query",
    "alarms": "cli.alarms",
    "db": "cli.db",
    "report": "cli.report",
    "hil": "cli.hil",
    "node": "cli.node",
    "sim": "cli.sim",
    "creds": "cli.creds",
}

# Command groups, in the order `--help` lists them.
COMMAND_MODULES: list[str] = list(dict.fromkeys(COMMANDS.values()))


def command_module(argv: list[str]) -> str | None:
    """The module of the command `argv` names; None to load every module (an option
    before any command, such as --help, or no command, or one not in COMMANDS)."""
    for arg in argv:
        if arg.startswith("-"):
            return None
        return COMMANDS.get(arg)
    return None


def _version() -> str:
    try:
        return version("urbansense")
    except PackageNotFoundError:
        return "unknown"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with `only` the commands of that one module."""
    parser = argparse.ArgumentParser(
        prog="urbansense",
        description="City sensing network: node firmware tools, the edge aggregator, "
        "operations queries and test rigs.",
    )
    parser.add_argument("--version", action="version", version=f"urbansense {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if only is None or name == only:
            importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(command_module(sys.argv[1:] if argv is None else argv))
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
