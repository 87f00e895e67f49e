"""`urbansense report`: one self-contained HTML page for operations (opens without network)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from cli.errors import CommandError
from cli.query import add_connection_flags, add_scope_flags, question_from, with_hint
from ops.client import QueryError
from ops.report import gather, render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML report: occupancy, PM2.5 and AQI, alarms, node health",
        description="Write one self-contained HTML page (inline SVG charts, no network "
        "needed) with occupancy per zone over time, PM2.5 against the AQI "
        "bands, an alarm timeline and node health.",
    )
    add_connection_flags(p)
    add_scope_flags(p, "24h")
    p.add_argument("--interval", help="chart resolution, e.g. 5m or 1h (default: about 60 points per window)")
    p.add_argument("--out", default="report.html", help="HTML file to write (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.interval and not re.fullmatch(r"[1-9][0-9]*[smhdw]", args.interval):
        raise CommandError(f"bad --interval {args.interval!r}: use a number and s, m, h, d or w, e.g. 1h", 2)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CommandError(f"cannot write {out}: folder {out.parent} does not exist")
    q = question_from(args)
    try:
        html = render(gather(q, args.interval))
    except QueryError as err:
        raise CommandError(with_hint(str(err), args.url)) from None
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as err:
        raise CommandError(f"cannot write {out}: {err.strerror}") from None
    print(f"wrote {out} ({len(html.encode()) // 1024} KiB)")
    return 0
