"""`urbansense hil ...`: the test-rig commands. Each subcommand group is a module exposing
`register(subparsers)`, listed in HIL_COMMAND_MODULES."""

from __future__ import annotations

import argparse
import importlib

HIL_COMMAND_MODULES: list[str] = [
    "cli.hil_board",
    "cli.hil_run",
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hil",
        help="hardware-in-the-loop rigs: boards and scenarios",
        description="Hardware-in-the-loop rigs: virtual and serial boards, scenario runs.",
    )
    hil_sub = p.add_subparsers(title="hil commands", metavar="COMMAND")
    for name in HIL_COMMAND_MODULES:
        importlib.import_module(name).register(hil_sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
