"""`urbansense alarms ...`: the alarm desk over Alertmanager, and the responsibility file.

urbansense alarms [list] --config responsibility.toml       open alarms: age, who was told, acked
urbansense alarms ack NODE [EVENT] --by NAME --comment TEXT   record who took it (a silence)
urbansense alarms check-config responsibility.toml [--district D --zone Z --node N --event E]
urbansense alarms config responsibility.toml --out alertmanager.yml
urbansense alarms escalate --config responsibility.toml [--once]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli.errors import CommandError
from cli.output import add_format_flags, print_json, print_table


def _responsibility(path: str):
    from ops.dispatch.responsibility import ResponsibilityError, load

    try:
        return load(path)
    except ResponsibilityError as err:
        raise CommandError(
            f"{err.source}: bad responsibility file:\n  " + "\n  ".join(err.problems), 2
        ) from None


def _api(args: argparse.Namespace):
    from ops.dispatch.desk import AlertmanagerAPI

    if args.alertmanager:
        return AlertmanagerAPI(args.alertmanager)
    if args.config:
        return AlertmanagerAPI(_responsibility(args.config).alertmanager.url)
    return AlertmanagerAPI("http://127.0.0.1:9093")


def _desk_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the responsibility file (its [alertmanager] url is used)")
    p.add_argument(
        "--alertmanager", metavar="URL", help="Alertmanager's URL (default: from --config, else :9093)"
    )


def _duration(text: str) -> timedelta:
    from ops.dispatch.responsibility import seconds

    s = seconds(text) if text and text[-1].isalpha() else None
    if not s:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 4h, 1d")
    return timedelta(seconds=s)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alarms",
        help="open alarms: who was told, who took them; responsibility and escalation",
        description="The alarm desk over Alertmanager: list open alarms (the default), acknowledge "
        "one, check and generate the responsibility configuration, run the escalation step.",
    )
    _desk_flags(p)
    add_format_flags(p)
    p.set_defaults(func=cmd_list)
    asub = p.add_subparsers(title="alarms commands", metavar="COMMAND")

    ls = asub.add_parser(
        "list",
        help="open alarms with age, level, who was told, acknowledged (the default)",
        description="List the open alarms Alertmanager holds, oldest first.",
    )
    _desk_flags(ls)
    add_format_flags(ls)
    ls.set_defaults(func=cmd_list)

    ack = asub.add_parser(
        "ack",
        help="record who took an alarm (an Alertmanager silence with author and comment)",
        description="Acknowledge the open alarm of NODE (and EVENT): Alertmanager stops notifying "
        "for it at every level and it does not escalate further. The acknowledgement ends when the "
        "alarm clears (the escalation step expires it), and after --for at the latest.",
    )
    ack.add_argument("node", help="the node id")
    ack.add_argument("event", nargs="?", help="the event (default: every open alarm of the node)")
    ack.add_argument("--by", required=True, help="who takes it (name, team)")
    ack.add_argument("--comment", default="", help="what is being done")
    ack.add_argument(
        "--for", dest="hold", type=_duration, default=timedelta(hours=24), help="at most (default 24h)"
    )
    _desk_flags(ack)
    add_format_flags(ack)
    ack.set_defaults(func=cmd_ack)

    check = asub.add_parser(
        "check-config",
        help="validate a responsibility file; with --event, show the resolved route",
        description="Validate a responsibility file (each bad key named) and the Alertmanager "
        "configuration generated from it (amtool check-config). With --event (and --district, "
        "--zone, --node), show who Alertmanager tells at each level, as Alertmanager routes it.",
    )
    check.add_argument("file", help="the responsibility file (TOML or YAML)")
    check.add_argument("--district", default="unknown")
    check.add_argument("--zone", default="unknown")
    check.add_argument("--node", default="unknown")
    check.add_argument("--event", help="e.g. ch4, leak, cover-open")
    check.add_argument("--kind", help="the node's kind (needed only for battery-low)")
    check.add_argument("--severity", choices=["info", "warning", "critical"], help="default: the event's")
    add_format_flags(check)
    check.set_defaults(func=cmd_check)

    gen = asub.add_parser(
        "config",
        help="generate Alertmanager's configuration from a responsibility file",
        description="Write alertmanager.yml (routes, receivers, inhibitions) generated from the "
        "responsibility file; checked with amtool when it is installed.",
    )
    gen.add_argument("file", help="the responsibility file")
    gen.add_argument("--out", help="where to write (default: standard output)")
    gen.set_defaults(func=cmd_config)

    esc = asub.add_parser(
        "escalate",
        help="run the escalation step (unacknowledged critical alarms to the next level)",
        description="Every --every seconds: post level-2/3 copies of critical alarms not "
        "acknowledged in time, end the copies of cleared alarms, expire acknowledgements of "
        "cleared alarms. Runs until SIGTERM or Ctrl-C; --once for one pass.",
    )
    esc.add_argument("--config", required=True, help="the responsibility file")
    esc.add_argument("--alertmanager", metavar="URL", help="default: the file's [alertmanager] url")
    esc.add_argument("--every", type=float, default=15.0, help="seconds between passes (default 15)")
    esc.add_argument("--once", action="store_true", help="one pass, then exit")
    add_format_flags(esc)
    esc.set_defaults(func=cmd_escalate)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def cmd_list(args: argparse.Namespace) -> int:
    from ops.dispatch.desk import DeskError, open_alarms

    try:
        alarms = open_alarms(_api(args))
    except DeskError as err:
        raise CommandError(str(err)) from None
    now = datetime.now(UTC)
    if args.json:
        print_json([a.as_dict(now) for a in alarms])
        return 0
    print_table(
        ("node", "event", "district/zone", "severity", "age", "level", "told", "acknowledged by"),
        [
            (
                a.node,
                a.event,
                f"{a.district}/{a.zone}",
                a.severity,
                _ago(a.age_s(now)),
                a.level,
                ", ".join(a.told),
                f"{a.acked_by}: {a.ack_comment}" if a.acked_by else "NO",
            )
            for a in alarms
        ],
        title=f"open alarms ({len(alarms)})",
    )
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    from ops.dispatch.desk import DeskError, acknowledge

    try:
        done = acknowledge(_api(args), args.node, args.event, args.by, args.comment, args.hold)
    except DeskError as err:
        raise CommandError(str(err)) from None
    if args.json:
        print_json([{"node": a.node, "event": a.event, "silence": sid, "by": args.by} for a, sid in done])
        return 0
    for alarm, sid in done:
        print(f"{alarm.node} {alarm.event}: acknowledged by {args.by} (silence {sid})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ops.dispatch import routes
    from ops.dispatch.amconfig import render

    resp = _responsibility(args.file)
    try:
        with tempfile.TemporaryDirectory(prefix="urbansense-am-") as tmp:
            path = Path(tmp) / "alertmanager.yml"
            path.write_text(render(resp))
            routes.check(path)
        resolved = None
        if args.event:
            labels = routes.alarm_labels(
                args.district, args.zone, args.node, args.event, args.kind, args.severity
            )
            resolved = routes.resolve(resp, labels)
    except routes.RouteError as err:
        raise CommandError(str(err)) from None
    summary = {
        "valid": True,
        "file": args.file,
        "institutions": sorted(resp.institutions),
        "rules": len(resp.rule),
        "default": resp.default.institution,
        "alertmanager": resp.alertmanager.url,
    }
    if resolved is not None:
        summary["labels"] = resolved.labels
        summary["route"] = [
            {"level": lv.level, "receivers": lv.receivers, "ack_within": lv.ack_within}
            for lv in resolved.levels
        ]
    if args.json:
        print_json(summary)
        return 0
    print(f"{args.file}: valid (Alertmanager accepts the generated configuration)")
    print(f"  institutions: {', '.join(summary['institutions'])}")
    print(f"  rules: {summary['rules']}; default: {summary['default']}")
    if resolved is not None:
        lb = resolved.labels
        print(
            f"  route of {lb['event']} ({lb['severity']}) on {lb['kind']} {lb['district']}/{lb['zone']}/{lb['node']}:"
        )
        for lv in resolved.levels:
            names = ", ".join(
                f"{r} ({resp.institutions[r].name})" for r in lv.receivers if r in resp.institutions
            )
            then = f"; not acknowledged within {lv.ack_within}: next level" if lv.ack_within else ""
            print(f"    level {lv.level}: {names}{then}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from ops.dispatch import routes
    from ops.dispatch.amconfig import render

    resp = _responsibility(args.file)
    text = render(resp)
    if not args.out:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    try:
        routes.check(out)
    except routes.RouteError as err:
        if "not installed" not in str(err):
            raise CommandError(f"{out}: {err}") from None
    print(f"wrote {out}")
    return 0


def cmd_escalate(args: argparse.Namespace) -> int:
    from ops.dispatch.desk import AlertmanagerAPI, DeskError
    from ops.dispatch.escalate import run_once

    resp = _responsibility(args.config)
    api = AlertmanagerAPI(args.alertmanager or resp.alertmanager.url)
    if args.once:
        try:
            steps = run_once(api, resp)
        except DeskError as err:
            raise CommandError(str(err)) from None
        if args.json:
            print_json([s.__dict__ for s in steps])
        else:
            for s in steps:
                print(f"{s.node} {s.event}: level {s.level} {s.action} ({s.to})")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("urbansense.ops.escalate")
    failing = False
    while True:
        try:
            run_once(api, resp)
            if failing:
                log.info("Alertmanager answers again")
            failing = False
        except DeskError as err:
            if not failing:
                log.warning("%s; trying again every %g s", err, args.every)
            failing = True
        time.sleep(args.every)
