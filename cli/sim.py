"""`urbansense sim`: a fleet of virtual nodes, each the real firmware under the MicroPython
unix port with the sim HAL, publishing to a broker until the duration ends (or Ctrl-C)."""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from cli.errors import CommandError
from cli.output import add_format_flags, print_json, print_table
from hil.micropython import MicroPythonMissing
from hil.sim import KINDS, Fleet
from hil.sim_build import BuildError
from protocols.topics import is_slug


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim",
        help="run a fleet of virtual nodes (the real firmware) against a broker",
        description=" ".join(__doc__.split("\n\n")[0].split()).split(": ", 1)[1],
    )
    p.add_argument(
        "--broker",
        required=True,
        metavar="HOST:PORT[,HOST:PORT...]",
        help="the MQTT broker, or every member of a clustered tier (NATS), comma-separated: "
        "the nodes fail over between them",
    )
    p.add_argument("--nodes", type=int, default=8, metavar="N", help="how many nodes (default 8)")
    p.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated kinds, assigned in turn (default: all four)"
    )
    p.add_argument("--district", required=True, help="district slug, e.g. xuhui")
    p.add_argument("--zone", required=True, help="zone slug, e.g. caohejing")
    p.add_argument(
        "--interval",
        type=float,
        default=60.0,
        metavar="S",
        help="reporting interval in seconds (default 60; the sim accepts down to 0.1)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic world (default 1)")
    p.add_argument(
        "--dir",
        default=None,
        metavar="PATH",
        help="keep the nodes' flash folders here (default: a temporary folder, removed)",
    )
    add_format_flags(p)
    p.set_defaults(func=run)


def parse_broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"--broker {text!r}: expected HOST:PORT, e.g. 127.0.0.1:1883", 2)
    return host, int(port)


def parse_brokers(text: str) -> list[tuple[str, int]]:
    members = [parse_broker(part.strip()) for part in text.split(",") if part.strip()]
    if not members:
        raise CommandError("--broker: expected HOST:PORT, e.g. 127.0.0.1:1883", 2)
    if len(set(members)) != len(members):
        raise CommandError(f"--broker {text!r}: a member is listed twice", 2)
    return members


def reachable(host: str, port: int) -> str | None:
    """None if a TCP connection opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as err:
        return str(err.strerror or err)


def check_args(args: argparse.Namespace) -> tuple[list[tuple[str, int]], list[str]]:
    members = parse_brokers(args.broker)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise CommandError(
            f"--kinds: unknown kind {', '.join(bad) or '(none)'}; choose from {', '.join(KINDS)}", 2
        )
    for name in ("district", "zone"):
        if not is_slug(getattr(args, name)):
            raise CommandError(f"--{name} {getattr(args, name)!r} is not a slug [a-z0-9-]{{1,32}}", 2)
    if not 1 <= args.nodes <= 5000:
        raise CommandError("--nodes must be 1..5000", 2)
    if not 0.1 <= args.interval <= 86400:
        raise CommandError("--interval must be 0.1..86400 seconds", 2)
    if args.duration is not None and args.duration <= 0:
        raise CommandError("--duration must be positive", 2)
    down = {f"{h}:{p}": why for h, p in members if (why := reachable(h, p)) is not None}
    if len(down) == len(members):
        raise CommandError("broker unreachable: " + "; ".join(f"{addr}: {why}" for addr, why in down.items()))
    for addr, why in down.items():
        # A member down is what a clustered tier is for: the nodes use the others.
        print(f"warning: broker member {addr} unreachable ({why}); the nodes use the others", file=sys.stderr)
    return members, kinds


def run(args: argparse.Namespace) -> int:
    members, kinds = check_args(args)
    host, port = members[0]
    servers = [f"{h}:{p}" for h, p in members] if len(members) > 1 else None
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="urbansense-sim-"))
    try:
        fleet = Fleet(
            host,
            port,
            args.district,
            args.zone,
            kinds,
            args.nodes,
            args.interval,
            args.seed,
            base,
            servers=servers,
        )
    except (MicroPythonMissing, BuildError) as err:
        raise CommandError(str(err)) from None
    started = time.monotonic()
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeRemainingColumn(),
            transient=True,
            disable=args.json,
        ) as progress:
            task = progress.add_task("starting nodes", total=args.nodes)
            fleet.start(progress=lambda: progress.advance(task))
            if args.duration is not None:
                left = max(0.0, args.duration - (time.monotonic() - started))
                run_task = progress.add_task("running", total=left)
                end = time.monotonic() + left
                while time.monotonic() < end:
                    time.sleep(0.5)
                    progress.update(run_task, completed=left - (end - time.monotonic()))
            else:
                while True:
                    time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
    elapsed = time.monotonic() - started
    rows = summary(fleet)
    total = {
        "nodes": len(rows),
        "seconds": round(elapsed, 1),
        "readings": sum(r["published"] for r in rows),
        "events": sum(r["events"] for r in rows),
        "dropped": sum(r["dropped"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
        "stopped_early": [r["node"] for r in rows if not r["ran_to_end"]],
    }
    if args.json:
        print_json({"total": total, "nodes": rows})
    else:
        by_kind: dict[str, list[dict]] = {}
        for r in rows:
            by_kind.setdefault(r["kind"], []).append(r)
        print_table(
            ["kind", "nodes", "starts", "readings", "events", "dropped", "errors", "awake ms (median)"],
            [
                [
                    k,
                    len(rs),
                    sum(r["starts"] for r in rs),
                    sum(r["published"] for r in rs),
                    sum(r["events"] for r in rs),
                    sum(r["dropped"] for r in rs),
                    sum(r["errors"] for r in rs),
                    _median([a for r in rs for a in r["awake_ms"]]),
                ]
                for k, rs in by_kind.items()
            ],
            title=f"urbansense sim: {len(rows)} nodes for {elapsed:.0f} s",
        )
        for node in total["stopped_early"]:
            print(f"node {node} stopped early; last console lines:")
            print(next(n for n in fleet.nodes if n.node_id == node).console_tail(5))
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if total["stopped_early"] else 0


def _median(values: list[int]) -> int | None:
    if not values:
        return None
    values = sorted(values)
    return values[len(values) // 2]


def summary(fleet: Fleet) -> list[dict]:
    rows = []
    for node in fleet.nodes:
        st = node.stats
        rows.append(
            {
                "node": node.node_id,
                "kind": node.config["kind"],
                "schedule": node.config["schedule"],
                "starts": st.starts,
                "published": st.published,
                "events": st.events,
                "dropped": st.dropped,
                "errors": st.errors,
                "crashes": st.crashes,
                "awake_ms": st.awake_ms,
                "heap_peak": st.heap_peak,
                "ran_to_end": st.exit_code in (None, 75, 76) and st.crashes == 0,
            }
        )
    return rows
