"""`urbansense node ...`: the field technician's tool. Build the firmware bundle, flash one
node, provision a fleet from an inventory, read what a node is, list the serial ports."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from cli.errors import CommandError
from cli.output import add_format_flags, print_json, print_table
from field import bundle as bundles
from field import inventory
from field.access import AccessError, BrokerAccess, reload_broker
from field.esptool_cmd import IMAGE_OFFSETS, EsptoolError, flash_image
from field.flash import Outcome, flash_node
from field.info import read_info
from field.node_config import ConfigError, NodeConfig, load, parse, parse_host_port
from field.serial_board import BoardError, list_ports
from field.toolchain import MicroPythonMissing

DEFAULT_BUNDLE = Path("build") / "bundle"
STATUS_STYLE = {"live": "green", "flashed": "yellow", "failed": "red"}
# How long to keep sending Ctrl-C to a board (field/serial_board.py): a board reset through
# its RTS line answers within a second or two; one without (a virtual board, some USB
# adapters) answers at its next wake, so a duty-cycled node gets its interval on top.
CONNECT_TIMEOUT_S = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "node",
        help="build, flash and provision nodes; read a node's state",
        description="The field technician's tool: build the firmware bundle, flash one node, "
        "provision a fleet from an inventory, read what a node is.",
    )
    node_sub = p.add_subparsers(title="node commands", metavar="COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    b = node_sub.add_parser(
        "build",
        help="compile the firmware into a versioned bundle",
        description="Compile firmware/ and protocols/ with mpy-cross into a "
        "bundle with a manifest of sha256 hashes.",
    )
    b.add_argument(
        "--out", type=Path, default=DEFAULT_BUNDLE, help=f"bundle folder (default: {DEFAULT_BUNDLE})"
    )
    add_format_flags(b)
    b.set_defaults(func=run_build)

    f = node_sub.add_parser(
        "flash",
        help="flash one node and wait until it is live",
        description="Copy the bundle and the node's config to a board, verify "
        "the hashes, reset it and wait for its birth message.",
    )
    f.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    f.add_argument(
        "--node",
        required=True,
        type=Path,
        metavar="NODE_CONFIG",
        help="the node's config (JSON, the keys of config.json)",
    )
    f.add_argument(
        "--image",
        type=Path,
        help="first erase the chip and write this MicroPython image with esptool (real ESP32 boards only)",
    )
    f.add_argument(
        "--chip",
        default="esp32",
        choices=sorted(IMAGE_OFFSETS),
        help="chip for --image; sets the image offset (default: esp32)",
    )
    f.add_argument(
        "--replace",
        action="store_true",
        help="flash the board even if it holds another node (that node's queue and state on it are erased)",
    )
    _flash_options(f)
    f.set_defaults(func=run_flash)

    pr = node_sub.add_parser(
        "provision",
        help="flash every node of an inventory CSV",
        description="Work through a fleet inventory: flash each node, wait "
        "until it is live, write results (CSV and JSON).",
    )
    pr.add_argument(
        "--inventory", required=True, type=Path, help="CSV: node,district,zone,kind,port and override columns"
    )
    pr.add_argument(
        "--defaults", type=Path, help="site defaults for every node (JSON: platform, wifi, broker, ...)"
    )
    pr.add_argument(
        "--resume",
        action="store_true",
        help="skip the nodes an earlier run left live (results are merged by node either way)",
    )
    pr.add_argument(
        "--replace",
        action="store_true",
        help="flash boards that hold another node (never one flashed earlier in the same run)",
    )
    pr.add_argument(
        "--one-cable",
        action="store_true",
        help="boards are plugged in one at a time: wait for Enter before each node",
    )
    pr.add_argument(
        "--results", type=Path, help="folder for results.csv and results.json (default: INVENTORY-results/)"
    )
    _flash_options(pr)
    pr.set_defaults(func=run_provision)

    i = node_sub.add_parser(
        "info",
        help="firmware, config, memory, reset cause, queue of a node",
        description="Read a node's state over its REPL (secrets masked); "
        "the node's program is restarted afterwards.",
    )
    i.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    i.add_argument(
        "--timeout",
        type=float,
        help=f"seconds to keep trying to reach the REPL (default: {CONNECT_TIMEOUT_S:g}; with "
        "--node of a duty-cycled node, its interval more)",
    )
    i.add_argument(
        "--no-restart",
        action="store_true",
        help="leave the node in its REPL instead of restarting its program",
    )
    i.add_argument(
        "--node",
        type=Path,
        metavar="NODE_CONFIG",
        help="the node's config file: how this laptop reaches the broker (password, "
        "CA file), which the board cannot tell (it masks its passwords)",
    )
    _watch_user_option(i)
    add_format_flags(i)
    i.set_defaults(func=run_info)

    ports = node_sub.add_parser(
        "ports",
        help="list the serial ports a board can be on",
        description="List this machine's serial ports (USB adapters and boards) with their "
        "description and USB id. A virtual board's port is printed by `urbansense hil board`.",
    )
    add_format_flags(ports)
    ports.set_defaults(func=run_ports)


def _flash_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, help="a bundle from `node build` (default: build one now)")
    p.add_argument(
        "--broker",
        metavar="HOST:PORT",
        help="the broker the node connects to (overrides the config's broker)",
    )
    p.add_argument(
        "--watch",
        metavar="HOST:PORT",
        help="where this laptop reaches that broker, if not at the same address",
    )
    _watch_user_option(p)
    p.add_argument(
        "--access-dir",
        type=Path,
        help="the site broker's account folder (see `urbansense creds`): give the node "
        "an account of its own with a new password, written only into the config "
        "that goes onto the board",
    )
    p.add_argument(
        "--broker-pid",
        type=int,
        help="with --access-dir: the broker's process id, signalled to reload its accounts",
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the birth message (default: 60)"
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        metavar="S",
        help=f"seconds to keep trying to reach the board's REPL (default: {CONNECT_TIMEOUT_S:g}, "
        "plus the node's interval for a duty-cycled node)",
    )
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="do not watch the broker: stop after the verified copy and reset",
    )
    add_format_flags(p)


WATCH_PASSWORD_ENV = "URBANSENSE_WATCH_PASSWORD"


def _watch_user_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--watch-user",
        metavar="USER",
        help="broker account this laptop reads the node's status with (a production "
        f"ACL lets nodes write it, not read it); password in ${WATCH_PASSWORD_ENV}",
    )


def _watch_credentials(args: argparse.Namespace) -> tuple[str | None, str | None]:
    if not args.watch_user:
        return None, None
    password = os.environ.get(WATCH_PASSWORD_ENV)
    if password is None:
        raise CommandError(f"--watch-user {args.watch_user}: set its password in ${WATCH_PASSWORD_ENV}")
    return args.watch_user, password


def _stderr() -> Console:
    return Console(stderr=True)


def _say(text: str) -> None:
    """A message to the technician on stderr, printed as it is (no rich markup)."""
    _stderr().print(text, markup=False, highlight=False, soft_wrap=True)


def connect_timeout(given: float | None, config: NodeConfig | None) -> float:
    """How long to try for the REPL: as given, or long enough for a sleeping node's next wake."""
    if given is not None:
        return given
    if config is not None and config.schedule == "duty-cycled":
        return CONNECT_TIMEOUT_S + config.wake_interval_s
    return CONNECT_TIMEOUT_S


def _bar(transient: bool) -> Progress:
    """A progress bar on stderr, so --json output on stdout stays clean."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_stderr(),
        transient=transient,
    )


# -- build
def run_build(args: argparse.Namespace) -> int:
    with _progress("compiling") as step:
        try:
            built = bundles.build(args.out, progress=step)
        except (bundles.BundleError, MicroPythonMissing) as err:
            raise CommandError(str(err)) from None
        except OSError as err:
            raise CommandError(f"cannot write the bundle to {args.out}: {err.strerror}") from None
    size = sum(built.path(n).stat().st_size for n in built.files)
    if args.json:
        print_json(
            {"bundle": str(built.root), "version": built.version, "files": len(built.files), "bytes": size}
        )
    else:
        print_table(
            ("bundle", "version", "files", "bytes"),
            [(built.root, built.version, len(built.files), size)],
            title="firmware bundle",
        )
    return 0


@contextmanager
def _progress(what: str, total: int | None = None) -> Iterator[Callable[[str], None]]:
    with _bar(transient=True) as progress:
        task = progress.add_task(what, total=total)

        def step(name: str) -> None:
            progress.update(task, advance=1, description=f"{what} {name}")

        yield step


@contextmanager
def _bundle(path: Path | None) -> Iterator[bundles.Bundle]:
    """The bundle given (checked against its manifest), or one built now in a temp folder."""
    try:
        if path is not None:
            yield bundles.load(path)
            return
        with tempfile.TemporaryDirectory(prefix="urbansense-bundle-") as tmp:
            with _progress("compiling") as step:
                built = bundles.build(Path(tmp), progress=step)
            yield bundles.load(built.root)
    except (bundles.BundleError, MicroPythonMissing) as err:
        raise CommandError(str(err)) from None


def _watch_address(args: argparse.Namespace) -> tuple[str | None, int | None]:
    if not args.watch:
        return None, None
    try:
        return parse_host_port(args.watch)
    except ConfigError as err:
        raise CommandError(str(err).replace("--broker", "--watch")) from None


def _apply_broker(data: dict, args: argparse.Namespace) -> None:
    if args.broker:
        host, port = parse_host_port(args.broker)
        data.setdefault("broker", {})
        if not isinstance(data["broker"], dict):
            data["broker"] = {}
        data["broker"].update(host=host, port=port)


def _flash_with_progress(
    port: str,
    config: NodeConfig,
    built: bundles.Bundle,
    args: argparse.Namespace,
    label: str = "",
    progress: Progress | None = None,
    replace: bool = False,
    flashed_here: set[str] | None = None,
) -> Outcome:
    """Flash with a bar of its own, or a task on the fleet's bar (one live display at once)."""
    if progress is None:
        with _bar(transient=True) as own:
            return _flash_with_progress(port, config, built, args, label, own, replace, flashed_here)
    watch_host, watch_port = _watch_address(args)
    watch_user, watch_password = _watch_credentials(args)
    # One step per file copied and per file verified (config.json too; the CA once verified).
    steps = 2 * (len(built.files) + 1) + (1 if config.broker.ca else 0)
    task = progress.add_task(f"{label}connecting", total=steps)

    def step(phase: str, detail: str) -> None:
        advance = 1 if phase in ("copy", "verify") else 0
        progress.update(task, advance=advance, description=f"{label}{phase} {detail}")

    try:
        return flash_node(
            port,
            config,
            built,
            timeout=args.timeout,
            watch_host=watch_host,
            watch_port=watch_port,
            wait=not args.no_wait,
            step=step,
            board_timeout=connect_timeout(args.connect_timeout, config),
            watch_user=watch_user,
            watch_password=watch_password,
            replace=replace,
            flashed_here=flashed_here or set(),
        )
    finally:
        progress.remove_task(task)


def _issue_credential(config: NodeConfig, args: argparse.Namespace) -> NodeConfig:
    """With --access-dir, a new broker account for the node (a re-flash replaces its
    password). The password goes into the config sent to the board, nowhere else: the
    config file on the laptop stays as it was, and nothing prints it."""
    if args.access_dir is None:
        return config
    try:
        if args.broker_pid:
            os.kill(args.broker_pid, 0)  # the broker is there, before any account changes
        password = BrokerAccess(args.access_dir).add(config.node, "node", config.district, config.zone)
        if args.broker_pid:
            reload_broker(args.broker_pid)
    except AccessError as err:
        raise CommandError(str(err)) from None
    except ProcessLookupError:
        raise CommandError(f"--broker-pid {args.broker_pid}: no such process") from None
    broker = config.broker.model_copy(update={"username": config.node, "password": password})
    return config.model_copy(update={"broker": broker})


def _print_outcomes(outcomes: list[Outcome], as_json: bool, title: str) -> None:
    if as_json:
        print_json({"nodes": [o.to_dict() for o in outcomes]})
        return
    print_table(
        ("node", "port", "status", "fw", "boot", "reset", "reason"),
        [
            (
                o.node,
                o.port,
                Text(o.status, style=STATUS_STYLE.get(o.status, "")),
                o.fw,
                o.boot,
                o.reset,
                o.reason,
            )
            for o in outcomes
        ],
        title=title,
    )


# -- flash
def _check_watch_options(args: argparse.Namespace) -> None:
    """Refuse bad --watch/--watch-user before any board is touched."""
    _watch_address(args)
    _watch_credentials(args)


def run_flash(args: argparse.Namespace) -> int:
    _check_watch_options(args)
    try:
        data = load(args.node)
        _apply_broker(data, args)
        config = parse(data, str(args.node))
    except ConfigError as err:
        raise CommandError(str(err)) from None
    if args.image:
        _say(f"erasing and writing {args.image} ({args.chip}) with esptool …")
        try:
            flash_image(args.chip, args.port, args.image)
        except EsptoolError as err:
            raise CommandError(str(err)) from None
    config = _issue_credential(config, args)
    with _bundle(args.bundle) as built:
        outcome = _flash_with_progress(args.port, config, built, args, replace=args.replace)
    if args.json:
        _print_outcomes([outcome], True, "")
    if outcome.status == "failed":  # one line says why, whatever step failed
        raise CommandError(f"{outcome.node} is NOT live: {outcome.reason}")
    if not args.json:
        _print_outcomes([outcome], False, f"node {config.node}")
        if outcome.held not in (None, outcome.node):
            print(f"{outcome.node} replaced {outcome.held} on {outcome.port}")
        if outcome.live:
            print(
                f"{outcome.node} is live (firmware {outcome.fw}, boot {outcome.boot}) "
                f"after {outcome.seconds:g} s"
            )
        else:
            print(f"{outcome.node} was flashed and verified; its birth message was not watched")
    return 0


# -- provision
def run_provision(args: argparse.Namespace) -> int:
    _check_watch_options(args)
    try:
        defaults = load(args.defaults) if args.defaults else {}
        _apply_broker(defaults, args)
        rows = inventory.read(args.inventory, defaults)
        results_dir = args.results or args.inventory.with_name(args.inventory.stem + "-results")
        earlier = inventory.load_results(results_dir)
    except ConfigError as err:
        raise CommandError(str(err)) from None
    if not rows:
        raise CommandError(f"{args.inventory}: no nodes in it")
    _refuse_common_problem(rows, args)
    results = dict(earlier)
    todo = [r for r in rows if not (args.resume and earlier.get(r.node, {}).get("status") == "live")]
    skipped = len(rows) - len(todo)
    if skipped:
        _say(f"resuming: {skipped} node(s) already live, {len(todo)} to do")
    elif earlier and not args.resume:
        _say(
            f"{results_dir} holds results of {len(earlier)} node(s): this run's are merged in by node "
            "(a node it does not flash keeps its record)"
        )
    done: list[Outcome] = []
    stopped = False
    with _bundle(args.bundle) as built:
        with _bar(transient=False) as progress:
            fleet = progress.add_task("fleet", total=len(todo))
            flashed_here: set[str] = set()
            row: inventory.FleetRow | None = None
            try:
                for row in todo:
                    progress.update(fleet, description=f"fleet: {row.node} on {row.port}")
                    outcome = _provision_row(row, built, args, progress, flashed_here)
                    if outcome is None:  # the technician stopped the run
                        stopped = True
                        break
                    done.append(outcome)
                    if outcome.touched:
                        flashed_here.add(outcome.node)
                    inventory.merge(results, outcome)
                    inventory.write_results(results_dir, args.inventory, results)
                    progress.advance(fleet)
            except KeyboardInterrupt:
                progress.stop()
                _print_outcomes(done, args.json, f"provisioned from {args.inventory.name}")
                at = f" while flashing {row.node}" if row is not None else ""
                raise CommandError(
                    f"interrupted{at}: results so far in {results_dir}; run again with --resume "
                    "to do the rest",
                    130,
                ) from None
    _print_outcomes(done, args.json, f"provisioned from {args.inventory.name}")
    if not args.json:
        print(_fleet_summary(rows, results, results_dir))
    finished = not stopped and len(done) == len(todo)
    return 0 if finished and all(o.status in ("live", "flashed") for o in done) else 1


def _refuse_common_problem(rows: list[inventory.FleetRow], args: argparse.Namespace) -> None:
    """Every row failing alike is one mistake (a missing --defaults, a bad default): say it
    once, with the fix, and flash nothing."""
    problem = inventory.common_problem(rows)
    if problem is None and not args.defaults and all(r.config is None for r in rows):
        problem = rows[0].error
    if problem is None:
        return
    fix = (
        " (no --defaults given: the site file gives platform, wifi and broker; "
        "deploy/field/site.example.json shows one)"
        if not args.defaults
        else f" (fix it in {args.defaults} or add the column to {args.inventory.name})"
    )
    raise CommandError(f"{args.inventory}: every row fails: {problem}{fix}")


def _provision_row(
    row: inventory.FleetRow,
    built: bundles.Bundle,
    args: argparse.Namespace,
    progress: Progress,
    flashed_here: set[str],
) -> Outcome | None:
    """One row's outcome; None when the technician stops the run. With one cable, a board
    that turns out to be another node is asked about rather than failed."""
    if row.config is None:
        return inventory.row_failure(row)
    replace = args.replace
    prompt = f"connect {row.node} to {row.port}, then Enter (s: skip it, q: stop here) "
    while True:
        answer = _ask(progress, prompt) if args.one_cable else ""
        if answer == "q":
            return None
        if answer == "s":
            return Outcome(node=row.node, port=row.port, status="skipped", reason="skipped by the technician")
        replace = replace or answer == "r"
        try:
            config = _issue_credential(row.config, args)
        except CommandError as err:
            return Outcome(node=row.node, port=row.port, status="failed", reason=str(err))
        outcome = _flash_with_progress(
            row.port, config, built, args, f"{row.node}: ", progress, replace, flashed_here
        )
        held = outcome.held
        if not (args.one_cable and not outcome.touched and held not in (None, row.node)):
            return outcome
        # The board plugged in is another node: most likely the last one, not swapped.
        choices = (
            "s: skip it, q: stop here" if held in flashed_here else f"r: replace {held}, s: skip, q: stop"
        )
        prompt = f"{outcome.reason}\nconnect {row.node}'s board to {row.port}, then Enter ({choices}) "


def _fleet_summary(rows: list[inventory.FleetRow], results: dict[str, dict], results_dir: Path) -> str:
    status = [results.get(r.node, {}).get("status") for r in rows]
    live, flashed = status.count("live"), status.count("flashed")
    line = f"{live} of {len(rows)} node(s) live"
    if flashed:
        line += f", {flashed} flashed and verified but not watched for their birth message (--no-wait)"
    return f"{line}; results in {results_dir}/results.csv and results.json"


def _ask(progress: Progress, prompt: str) -> str:
    """With one cable the boards are plugged in turn: wait for the technician."""
    progress.stop()
    try:
        print(prompt, end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline()
    finally:
        progress.start()
    if not answer:  # end of input: nobody there to plug boards in
        return "q"
    return answer.strip().lower()[:1]


# -- info
def run_info(args: argparse.Namespace) -> int:
    watch_user, watch_password = _watch_credentials(args)
    connecting = _ConnectingLine(args.port)
    try:
        laptop = parse(load(args.node), str(args.node)) if args.node else None
        info = read_info(
            args.port,
            timeout=connect_timeout(args.timeout, laptop),
            restart=not args.no_restart,
            laptop_config=laptop,
            watch_user=watch_user,
            watch_password=watch_password,
            progress=connecting,
        )
    except (BoardError, ConfigError) as err:
        raise CommandError(str(err)) from None
    finally:
        connecting.end()
    if args.json:
        print_json(info)
        return 0
    queue = info.get("queue") or {}
    reset = info["reset_cause"]
    if info.get("reset_here"):
        reset = f"{reset} (the reset made here to reach it; the cause before it is not known)"
    counters = info.get("counters") or {}
    rows = [
        ("node", info["node"]),
        ("firmware", info["firmware"]),
        ("bundle", info["bundle"]),
        ("micropython", info["micropython"]),
        ("platform", info["platform"]),
        ("free memory", f"{info['mem_free']} bytes {info['mem_note']}".strip()),
        ("last reset", reset),
        ("boot counter", info["boot"]),
        ("on the broker", info["broker_status"] or info["broker_note"]),
        ("queue depth", f"{queue.get('events', 0)} events, {queue.get('telemetry', 0)} readings"),
        ("counters", ", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "none counted yet"),
    ]
    for key, value in sorted((info.get("config") or {}).items()):
        rows.append((f"config.{key}", value))
    print_table(("", "value"), rows, title=f"node on {args.port}")
    return 0


class _ConnectingLine:
    """esptool's "Connecting...." on a terminal while a board does not answer yet: one dot
    a second (field/serial_board.py calls it). Nothing when stderr is not a terminal."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.shown = False

    def __call__(self, dots: int) -> None:
        if dots < 1 or not sys.stderr.isatty():
            return
        if not self.shown:
            print(f"Connecting to {self.port}", end="", file=sys.stderr)
            self.shown = True
        print(".", end="", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.shown:
            print(file=sys.stderr, flush=True)


# -- ports
def run_ports(args: argparse.Namespace) -> int:
    ports = list_ports()
    if args.json:
        print_json({"ports": ports})
        return 0
    if not ports:
        print("no serial ports found (is the board plugged in? a virtual board's port: urbansense hil board)")
        return 0
    columns = ("port", "description", "usb", "serial_number")
    print_table(columns, [[p[c] for c in columns] for p in ports], title="serial ports")
    return 0
