"""`urbansense hil run SCENARIO... [--board virtual|sim|PORT ...] [--junit FILE]`."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from rich.console import Console
from rich.text import Text

from cli.errors import CommandError
from cli.output import add_format_flags, print_json
from hil import junit, report
from hil.node_handles import NodeHandle, SimNodeHandle
from hil.runner import BoardFactory, run_scenarios
from hil.scenario import BoardSpec, ScenarioError, Site, load
from hil.stack.city_stack import sigterm_as_interrupt


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="play scenario files on virtual or real boards",
        description="Play HIL scenarios: bring up a private broker, InfluxDB and edge, flash "
        "each board, play the stimuli and faults, and check every expectation "
        "with its measured figure. Exit code 0 only if every scenario passes.",
    )
    p.add_argument(
        "scenarios",
        nargs="+",
        metavar="SCENARIO",
        help="scenario files (.yaml, .yml, .toml), e.g. hil/scenarios/*",
    )
    p.add_argument(
        "--board",
        action="append",
        default=[],
        metavar="virtual|sim|PORT",
        help="the rig board for each scenario board, in order (repeat the option); "
        "`virtual`: the unix port behind a pty, flashed like a real board "
        "(default); `sim`: a sim node; else a serial port such as /dev/ttyUSB0",
    )
    p.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    p.add_argument(
        "--broker-host",
        metavar="ADDR",
        help="an address of this machine that real boards reach over their Wi-Fi: "
        "the rig's broker also listens there and boards are given it "
        "(default: loopback, enough for virtual boards)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="scenarios run side by side on virtual boards, each with its own "
        "servers (default 1; latency figures are steadiest with 1)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="keep servers' and boards' state and logs here (default: a temp dir)",
    )
    add_format_flags(p)
    p.set_defaults(func=run)


def board_factory(arg: str) -> BoardFactory:
    if arg == "sim":
        return lambda spec, site, broker, flash: SimNodeHandle(spec, site, broker, flash)
    if arg == "virtual":
        return _virtual_board
    if not arg.startswith("/") and not arg.upper().startswith("COM"):
        raise CommandError(f"--board {arg!r}: expected virtual, sim or a serial port path")
    if arg.startswith("/") and not os.path.exists(arg):
        raise CommandError(f"--board {arg}: no such serial port")
    return lambda spec, site, broker, flash: _serial_board(arg, spec, site, broker)


def _virtual_board(spec: BoardSpec, site: Site, broker: tuple[str, int], flash: Path) -> NodeHandle:
    from hil.rig_boards import provisioned_virtual_board

    return provisioned_virtual_board(spec, site, broker, flash)


def _serial_board(port: str, spec: BoardSpec, site: Site, broker: tuple[str, int]) -> NodeHandle:
    from hil.rig_boards import provisioned_serial_board

    return provisioned_serial_board(port, spec, site, broker)


def _check_local_address(addr: str) -> None:
    """The broker can only listen on an address this machine has."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((addr, 0))
    except OSError as err:
        raise CommandError(
            f"--broker-host {addr}: not an address of this machine ({err.strerror})", exit_code=2
        ) from None


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.scenarios]
    # Every file is checked before anything starts: a typo fails in a second, not after a run.
    for path in paths:
        try:
            scenario = load(path)
        except ScenarioError as err:
            raise CommandError(str(err), exit_code=2) from None
        if len(args.board) > len(scenario.boards) and len(paths) == 1:
            raise CommandError(
                f"{path}: {len(args.board)} --board given for {len(scenario.boards)} board(s)", exit_code=2
            )
    factories: dict[str, BoardFactory] = {a: board_factory(a) for a in set(args.board) | {"virtual"}}
    console = Console(stderr=True)

    def progress(line: str) -> None:
        console.print(Text(line, style="dim"), highlight=False, soft_wrap=True)

    if not 1 <= args.jobs <= 16:
        raise CommandError(f"--jobs {args.jobs}: must be 1..16", exit_code=2)
    if args.broker_host:
        _check_local_address(args.broker_host)
    with sigterm_as_interrupt():
        results = run_scenarios(
            paths,
            args.board,
            args.workdir,
            progress,
            factories.__getitem__,
            jobs=args.jobs,
            board_host=args.broker_host,
        )
    if args.junit:
        junit.write(results, args.junit)
    if args.json:
        print_json([r.as_dict() for r in results])
    else:
        report.print_summary(results, Console())
    if args.junit and not args.json:
        Console().print(f"JUnit XML: {args.junit}", highlight=False)
    return 0 if results and all(r.passed for r in results) else 1
