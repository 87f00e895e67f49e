"""`urbansense edge ...` (run the aggregator, check its config, look at its dead letters)
and `urbansense nodes` (the node registry of a running or stopped edge)."""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import time
from pathlib import Path

from cli.errors import CommandError
from cli.output import add_format_flags, print_json, print_table
from edge.logs import setup_logging


def _load(path: str):
    from edge.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        raise CommandError(f"{err.path}: bad config:\n  " + "\n  ".join(err.problems), 2) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edge",
        help="the edge aggregator: run it, check its config",
        description="The X-level edge aggregator: MQTT in, InfluxDB out.",
    )
    esub = p.add_subparsers(title="edge commands", metavar="COMMAND")

    run = esub.add_parser(
        "run",
        help="run the aggregator in the foreground",
        description="Run the edge aggregator in the foreground until "
        "SIGTERM or Ctrl-C (it finishes the commit in hand).",
    )
    run.add_argument("--config", required=True, help="the edge's TOML config file")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--log-format",
        default="json",
        choices=["json", "text"],
        help="json (one object per line, default) or text",
    )
    run.set_defaults(func=cmd_run)

    check = esub.add_parser(
        "check-config",
        help="validate a config file, naming each bad key",
        description="Validate an edge config file; exit 0 if it is usable.",
    )
    check.add_argument("file", nargs="?", help="the TOML config file")
    check.add_argument("--config", help="the same, as `edge run` takes it")
    add_format_flags(check)
    check.set_defaults(func=cmd_check)

    dead = esub.add_parser(
        "dead-letters",
        help="list quarantined messages",
        description="List the newest rows of the dead-letter table.",
    )
    dead.add_argument("--config", required=True, help="the edge's TOML config file")
    dead.add_argument(
        "--limit", type=int, default=50, help="how many of the newest rows to list (default 50)"
    )
    add_format_flags(dead)
    dead.set_defaults(func=cmd_dead_letters)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    nodes = sub.add_parser(
        "nodes",
        help="list the nodes an edge knows",
        description="List the node registry of an edge: online, battery, RSSI, firmware, "
        "seq gaps, readings the node dropped, its clock offset (flagged beyond [clock] max_offset_s).",
    )
    nodes.add_argument("--config", required=True, help="the edge's TOML config file")
    add_format_flags(nodes)
    nodes.set_defaults(func=cmd_nodes)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    from edge.config import buffer_folder_problem

    problem = buffer_folder_problem(cfg)
    if problem:
        raise CommandError(f"{args.config}: {problem}", 2)
    setup_logging(args.log_level, args.log_format)
    from edge.lock import EdgeStartError
    from edge.service import EdgeService

    try:
        service = EdgeService(cfg)
    except EdgeStartError as err:
        raise CommandError(str(err)) from None
    except OSError as err:
        # The buffer's folder or file refused (permissions, a file system turned
        # read-only): said in one line, with the path.
        raise CommandError(f"buffer {cfg.buffer_path}: {err.strerror or err}") from None
    except sqlite3.Error as err:
        raise CommandError(f"buffer {cfg.buffer_path}: {err}") from None

    def on_signal(signum, frame):
        logging.getLogger("urbansense.edge").info("signal %d: stopping", signum)
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return service.run()


def cmd_check(args: argparse.Namespace) -> int:
    from edge.config import ConfigError, buffer_folder_problem, load_config

    if args.file and args.config and args.file != args.config:
        raise CommandError("give the config file once: FILE or --config FILE", 2)
    args.file = args.file or args.config
    if not args.file:
        raise CommandError("which config? edge check-config FILE (or --config FILE)", 2)
    try:
        cfg = load_config(args.file)
        problem = buffer_folder_problem(cfg, missing_ok=True)
        if problem:
            raise ConfigError(args.file, [problem])
    except ConfigError as err:
        if args.json:
            print_json({"valid": False, "file": err.path, "problems": err.problems})
        else:
            print(f"{err.path}: invalid")
            for line in err.problems:
                print(f"  {line}")
        return 1
    from edge.config import redact_url

    summary = {
        "valid": True,
        "file": args.file,
        "site": f"{cfg.site.district}/{cfg.site.zone}",
        "buffer": str(cfg.buffer_path),
        "subscriptions": cfg.subscriptions(),
        "sinks": [
            f"{s.name}: {s.api} {redact_url(s.url)} {s.database or s.bucket} ({s.data})" for s in cfg.sink
        ],
        "metrics": cfg.metrics.listen or "off",
        "limits": _limits_summary(cfg.limits),
    }
    if args.json:
        print_json(summary)
    else:
        print(f"{args.file}: valid")
        for key in ("site", "buffer", "metrics", "limits"):
            print(f"  {key}: {summary[key]}")
        for s in summary["subscriptions"]:
            print(f"  subscribe: {s}")
        for s in summary["sinks"]:
            print(f"  sink {s}")
    return 0


def _limits_summary(limits) -> str:
    if not limits.node_rate and not limits.event_rate:
        return "no rate limit"
    rate = (
        f"{limits.rate_factor:g}x each node's interval"
        if limits.node_rate == "auto"
        else f"{limits.node_rate:g}/s"
        if limits.node_rate
        else "none"
    )
    events = f"{limits.event_rate:g}/s burst {limits.event_burst}" if limits.event_rate else "none"
    return f"messages {rate} burst {limits.node_burst}; events {events}"


def _open_buffer(cfg):
    """A read-only connection to the edge's buffer database."""
    from edge.database import connect

    path = cfg.buffer_path
    if not Path(path).exists():
        raise CommandError(f"no buffer at {path}: has this edge run yet?")
    return connect(path, readonly=True)


def cmd_nodes(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    conn = _open_buffer(cfg)
    from edge.registry import NodeRegistry

    try:
        registry = NodeRegistry(offline_after_intervals=cfg.health.offline_after_intervals)
        registry.load(conn)
    finally:
        conn.close()
    now = int(time.time() * 1000)
    out = []
    for name in sorted(registry.nodes):
        s = registry.nodes[name]
        silent = now - s.last_arrival_ms > cfg.health.offline_after_intervals * registry.interval_ms(s)
        # The stored flag, corrected for silence the running edge has not marked yet.
        online = bool(s.online) and not silent
        out.append(
            {
                "node": s.node,
                "district": s.district,
                "zone": s.zone,
                "kind": s.kind,
                "online": online,
                "last_seen_ms": s.last_seen_ms,
                "last_arrival_ms": s.last_arrival_ms,
                "battery_v": s.battery_v,
                "rssi": s.rssi,
                "fw": s.fw,
                "interval_s": s.interval_s,
                "boot": s.boot,
                "seq": s.seq,
                "seq_gaps": s.seq_gaps,
                "dropped": s.dropped,
                "clock_offset_ms": s.clock_offset_ms,
                "clock_bad": s.clock_bad,
                "ts_collisions": s.ts_collisions,
                "estimated_times": s.estimated_times,
                "reset": s.reset,
            }
        )
    if args.json:
        print_json(out)
        return 0

    def ago(ms):
        if ms is None:
            return ""
        secs = max(0, (now - ms) / 1000)
        return f"{secs:.0f}s ago" if secs < 120 else f"{secs / 60:.0f}m ago"

    print_table(
        ("node", "kind", "online", "last seen", "battery V", "RSSI", "fw", "boot", "seq gaps"),
        [
            (
                n["node"],
                n["kind"],
                "yes" if n["online"] else "NO",
                ago(n["last_arrival_ms"]),
                n["battery_v"],
                n["rssi"],
                n["fw"],
                n["boot"],
                n["seq_gaps"],
            )
            for n in out
        ],
        title=f"nodes of {cfg.site.district}/{cfg.site.zone} ({len(out)})",
    )

    def offset(n):
        return "" if n["clock_offset_ms"] is None else f"{n['clock_offset_ms'] / 1000:+.1f}"

    def clock(n):
        return "" if n["clock_bad"] is None else ("BAD" if n["clock_bad"] else "ok")

    # A second table rather than wider rows: a terminal's width must not cut a node's id.
    print_table(
        ("node", "seq gaps", "dropped", "ts moved", "clock offset s", "clock"),
        [(n["node"], n["seq_gaps"], n["dropped"], n["ts_collisions"], offset(n), clock(n)) for n in out],
        title=f"losses and clocks (clock limit {cfg.clock.max_offset_s:g} s)",
    )
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    conn = _open_buffer(cfg)
    from edge import deadletters

    try:
        items = deadletters.newest(conn, args.limit)
        counts = deadletters.by_reason(conn)
    finally:
        conn.close()

    def text(payload):
        if isinstance(payload, bytes):
            return payload.decode("utf-8", "backslashreplace")
        return payload

    for item in items:
        item["payload"] = text(item["payload"])
    if args.json:
        print_json({"by_reason": dict(counts), "newest": items})
        return 0
    print_table(("reason", "count"), counts, title="dead letters by reason")
    print_table(
        ("id", "reason", "source", "topic", "detail"),
        [(i["id"], i["reason"], i["source"], i["topic"], (i["detail"] or "")[:80]) for i in items],
        title=f"newest {len(items)}",
    )
    return 0
