"""`urbansense demo`: a whole small city on this machine (see demo/city.py),
`urbansense demo --query INFLUXQL` to look at what the last run left in InfluxDB, and
`urbansense demo --serve` to keep that InfluxDB up for the operations commands."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import urllib.error
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.errors import CommandError
from cli.output import add_format_flags, print_json, print_table

DEFAULT_STATE_DIR = Path("var/demo")
SERVE_PORT = 8086  # InfluxDB's own port: `urbansense query` and `report` ask there by default


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run a whole small city on this machine (the main job)",
        description="Start a private Mosquitto and InfluxDB, one edge per zone for 2 districts x "
        "2 zones, and virtual nodes of all four kinds running the real firmware; show "
        "the city live, stage a leak, an opened manhole cover and a gas alarm with "
        "their end-to-end latency, and end with what landed in InfluxDB. Everything "
        "started is stopped at the end, also on Ctrl-C.",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds the city runs once its nodes are online (default 60)",
    )
    p.add_argument(
        "--nodes-per-zone",
        type=int,
        default=8,
        metavar="N",
        help="virtual nodes per zone, kinds taken in turn (default 8: 32 nodes)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="S",
        help="reporting interval of the nodes in seconds (default 5)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the simulated world (default 1)")
    p.add_argument(
        "--broker",
        choices=["mosquitto", "nats"],
        default="mosquitto",
        help="the broker tier: one Mosquitto (default), or a 3-member NATS cluster "
        "(JetStream + its MQTT gateway), which edges and nodes fail over between",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help="where the servers, edges and nodes keep their state "
        f"(default {DEFAULT_STATE_DIR}; cleaned by the next run)",
    )
    p.add_argument(
        "--query",
        metavar="INFLUXQL",
        help="do not run the city: run this InfluxQL on the data the last run left",
    )
    p.add_argument(
        "--database",
        default="city",
        metavar="DB",
        help="database for --query (district_xuhui, district_minhang or city; default city)",
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="do not run the city: serve the data the last run left with InfluxDB until Ctrl-C, "
        "for `urbansense query` and `report` from another shell",
    )
    p.add_argument(
        "--port",
        type=int,
        default=SERVE_PORT,
        help=f"port for --serve (default {SERVE_PORT}, InfluxDB's own; a free one if it is taken)",
    )
    add_format_flags(p)
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if args.duration <= 0:
        raise CommandError(f"--duration {args.duration:g}: must be more than 0 seconds", 2)
    if not 1 <= args.nodes_per_zone <= 200:
        raise CommandError(f"--nodes-per-zone {args.nodes_per_zone}: must be 1..200", 2)
    if not 0.1 <= args.interval <= 3600:
        raise CommandError(f"--interval {args.interval:g}: must be 0.1..3600 seconds", 2)


def run(args: argparse.Namespace) -> int:
    if args.query:
        return _query(args)
    if args.serve:
        return _serve(args)
    _check(args)
    from demo.city import CityDemo, DemoError, DemoOptions
    from demo.view import CityView
    from hil.node_handles import NodeHandleError
    from hil.services import ServiceError
    from hil.stack.city_stack import sigterm_as_interrupt

    # Progress and the live view go to stderr when stdout carries JSON for a script.
    console = Console(stderr=args.json)
    view = CityView(console, "urbansense city in a box")
    options = DemoOptions(
        args.state_dir, args.duration, args.nodes_per_zone, args.interval, args.seed, args.broker
    )
    try:
        with sigterm_as_interrupt(), view:
            report = CityDemo(options, view).run()
    except (DemoError, ServiceError, NodeHandleError, ConnectionError) as err:
        raise CommandError(str(err).splitlines()[0]) from None
    except ImportError as err:
        raise CommandError(f"a part of the city is not installed: {err}") from None
    if args.json:
        print_json(report.as_dict())
    else:
        _print_report(report, wide_console())
    if report.interrupted:
        return 130
    landed = sum(ln.points for ln in report.districts)
    return 0 if landed > 0 and not report.problems else 1


def wide_console(stderr: bool = False) -> Console:
    """A console for tables: the terminal's width, or 160 columns when the output is a pipe
    or a file (rich would otherwise cut node names at 80)."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=160)


def _table(console: Console, title: str, columns: list[str], rows: list[tuple]) -> None:
    print_table(columns, rows, title=title, console=console)


def _print_report(report: Any, console: Console) -> None:
    from demo.city import DISTRICTS
    from demo.landed import example_queries

    def ms(v: float | None) -> str:
        return "not seen" if v is None else f"{v:.0f} ms"

    console.print(
        f"\nThe city ran {report.ran_s:.0f} s: up to {report.nodes_online} of {report.nodes} "
        f"nodes online, {report.messages} messages on the broker.",
        highlight=False,
    )
    _table(
        console,
        "staged alarms: end-to-end latency",
        ["alarm", "node", "stimulus -> alarms topic", "stimulus -> InfluxDB", "stimulus -> institution"],
        [
            (
                s.label,
                f"{s.district}/{s.zone}/{s.node}",
                ms(s.topic_ms),
                ms(s.influx_ms),
                ms(s.notified_ms) + (f" ({s.notified_to})" if s.notified_to else ""),
            )
            for s in report.staged
            if s.set_at is not None
        ],
    )
    _table(
        console,
        "raw readings per district and kind",
        ["database", "measurement", "points", "nodes"],
        [(ln.database, ln.measurement, ln.points, ln.nodes) for ln in report.districts],
    )
    _table(
        console,
        "city level: events, node health, one-minute rollups",
        ["database", "measurement", "points", "nodes"],
        [(ln.database, ln.measurement, ln.points, ln.nodes) for ln in report.city],
    )
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    for problem in report.problems:
        console.print(f"problem: {problem}", style="red", highlight=False, markup=False, soft_wrap=True)
    state = Path(report.state_dir).resolve()
    me = f"{shlex.quote(urbansense_command())} demo --state-dir {shlex.quote(str(state))}"
    console.print(
        f"\nState kept in {state}. See the data with InfluxQL (in this shell or a new one), e.g.:",
        highlight=False,
        markup=False,
    )
    for db, q in example_queries(list(DISTRICTS)):
        console.print(
            f"  {me} --database {db} --query {shlex.quote(q)}", highlight=False, markup=False, soft_wrap=True
        )
    console.print(
        "Or serve it to the operations commands (urbansense query, report) until Ctrl-C:",
        highlight=False,
        markup=False,
    )
    console.print(f"  {me} --serve", highlight=False, markup=False, soft_wrap=True)


def urbansense_command() -> str:
    """The `urbansense` that runs now, as an absolute path: a command printed for later works
    as printed in a new shell, whether or not its folder is on PATH."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "urbansense" and argv0.exists():
        return os.path.abspath(argv0)
    beside = Path(sys.executable).parent / "urbansense"  # `python -m cli.main` in a venv
    return str(beside) if beside.exists() else "urbansense"


def _kept_influxdb(args: argparse.Namespace, port: int | None = None):
    """InfluxDB on the state the last run kept (not started yet)."""
    from hil.services import InfluxDBServer

    folder = args.state_dir.resolve() / "influxdb"
    if not (folder / "meta").is_dir():
        raise CommandError(f"no demo data in {args.state_dir}: run `urbansense demo` first")
    return InfluxDBServer(folder, port)


def _serve(args: argparse.Namespace) -> int:
    """InfluxDB on the kept state until Ctrl-C or SIGTERM, with the commands that ask it."""
    from demo.city import DemoError, exclusive
    from hil.services import ServiceError, free_port
    from hil.stack.city_stack import sigterm_as_interrupt

    port = args.port if _port_free(args.port) else free_port()
    influx = _kept_influxdb(args, port)
    url = influx.url
    try:
        with sigterm_as_interrupt(), exclusive(args.state_dir):
            influx.start()
            _print_serving(url, port == SERVE_PORT)
            while influx.running():
                time.sleep(0.5)
            raise CommandError(f"InfluxDB on {url} stopped (its log: {influx.log_path})")
    except KeyboardInterrupt:
        print(f"stopped serving {url}", file=sys.stderr)
        return 0
    except DemoError as err:
        raise CommandError(str(err)) from None
    except ServiceError as err:
        raise CommandError(str(err).splitlines()[0]) from None
    finally:
        influx.stop()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _print_serving(url: str, default_port: bool) -> None:
    from demo.city import DISTRICTS

    me = shlex.quote(urbansense_command())
    where = "" if default_port else f" --url {url}"
    print(f"InfluxDB serves the demo's data on {url} until Ctrl-C. In another shell, e.g.:")
    first = next(iter(DISTRICTS))
    for command in (
        f"query alarms --db city{where}",
        f"query parking --district {first}{where}",
        f"query nodes --district {first} --all{where}",
        f"report --db city --out report.html{where}",
    ):
        print(f"  {me} {command}")
    print(f"  (or: export URBANSENSE_INFLUX_URL={url})", flush=True)


def _query(args: argparse.Namespace) -> int:
    """Start InfluxDB on the last run's data folder, run one InfluxQL statement, stop it."""
    from demo.city import DemoError, exclusive
    from hil.services import ServiceError

    influx = _kept_influxdb(args)
    try:
        # A demo still running holds this data open: one InfluxDB per folder.
        with exclusive(args.state_dir):
            influx.start()
            series = influx.query(args.query, db=args.database, epoch="ms")
    except DemoError as err:
        raise CommandError(str(err)) from None
    except ServiceError as err:
        raise CommandError(str(err).splitlines()[0].removeprefix("InfluxQL error: ")) from None
    except urllib.error.HTTPError as err:  # a statement InfluxDB cannot parse: 400 + JSON
        raise CommandError(f"InfluxDB refused the query: {_influx_error(err)}") from None
    finally:
        influx.stop()
    if args.json:
        print_json(series)
        return 0
    if not series:
        print("no rows", file=sys.stderr)
        return 0
    console = wide_console()
    for s in series:
        title = s.get("name", "") + (f" {s['tags']}" if s.get("tags") else "")
        rows = [
            tuple(_utc(v) if col == "time" else v for col, v in zip(s["columns"], row))
            for row in s.get("values", [])
        ]
        _table(console, title, s["columns"], rows)
    return 0


def _influx_error(err: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(err.read()).get("error", err.reason))
    except ValueError:
        return str(err.reason)


def _utc(ms: Any) -> Any:
    if not isinstance(ms, int):
        return ms
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
