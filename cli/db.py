"""`urbansense db`: set up the district and city databases with their retention."""

from __future__ import annotations

import argparse

from cli.errors import CommandError
from cli.output import add_format_flags, print_json, print_table
from cli.query import add_connection_flags, client_from
from ops import retention


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "db",
        help="set up the district and city databases with their retention",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    dsub = p.add_subparsers(title="actions", metavar="ACTION")
    p.set_defaults(func=lambda args: p.print_help() or 2)
    init = dsub.add_parser(
        "init",
        help="create the databases (1.x) or buckets (2.x/3.x) with retention; safe to run again",
        description="Create district_D databases keeping raw readings (default 30 days) and the city "
        "database keeping rollups, events and node health (default 2 years). InfluxDB 1.x "
        "(--api v1): databases with a default retention policy. InfluxDB 2.x/3.x (--api v2): "
        "buckets with an expiry rule and a DBRP mapping so that InfluxQL finds them.",
    )
    add_connection_flags(init)
    init.add_argument(
        "--api",
        choices=("v1", "v2"),
        default="v1",
        help="v1: InfluxDB 1.x databases; v2: InfluxDB 2.x/3.x buckets (default: %(default)s)",
    )
    init.add_argument(
        "--district",
        action="append",
        default=[],
        metavar="D",
        help="a district database to create (repeat; default: the 16 districts of Shanghai)",
    )
    init.add_argument(
        "--raw-days", type=int, default=30, help="how long districts keep raw readings (default: 30)"
    )
    init.add_argument(
        "--rollup-days", type=int, default=730, help="how long the city keeps rollups (default: 730)"
    )
    init.add_argument("--org", help="organization (v2 only)")
    init.add_argument("--dry-run", action="store_true", help="print what would be sent, change nothing")
    add_format_flags(init)
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    try:
        stores = retention.plan(
            args.district or retention.SHANGHAI_DISTRICTS, args.raw_days, args.rollup_days
        )
        if args.api == "v1":
            results = retention.init_v1(client_from(args), stores, args.dry_run)
        else:
            if not args.token or not args.org:
                raise CommandError("--api v2 needs --token (or $INFLUX_TOKEN) and --org", 2)
            results = retention.init_v2(args.url, args.token, args.org, stores, args.dry_run)
    except retention.RetentionError as err:
        raise CommandError(str(err)) from None
    if args.json:
        print_json(results)
    else:
        columns = ["database", "policy", "level", "retention_days", "shard_days", "action"]
        print_table(
            columns,
            ([r[c] for c in columns] for r in results),
            title=f"InfluxDB {'1.x databases' if args.api == 'v1' else '2.x/3.x buckets'} at {args.url}",
        )
        if args.dry_run:
            for r in results:
                if r["request"]:
                    print(r["request"])
    return 0
