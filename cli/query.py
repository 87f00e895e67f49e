"""`urbansense query`: the daily questions of city operations, answered from InfluxDB.

All answers are InfluxQL over the v1 `/query` API, which InfluxDB 1.x, InfluxDB 2.x (with
a DBRP mapping of the bucket, see deploy/influxdb/README.md) and InfluxDB 3.x all answer."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Callable
from typing import Any

from cli.errors import CommandError
from cli.output import add_format_flags, print_json, print_table
from ops import questions
from ops.answer import Answer
from ops.client import InfluxQLClient, QueryError
from ops.scope import Place, ScopeError, Window
from protocols.names import NODE_HEALTH

DEFAULT_URL = "http://127.0.0.1:8086"


def add_connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("URBANSENSE_INFLUX_URL", DEFAULT_URL),
        help="InfluxDB base URL (default: $URBANSENSE_INFLUX_URL or %(default)s)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("INFLUX_TOKEN"),
        help="API token for InfluxDB 2.x/3.x (default: $INFLUX_TOKEN)",
    )
    p.add_argument(
        "--username",
        default=os.environ.get("INFLUX_USERNAME"),
        help="user name for InfluxDB 1.x with auth (default: $INFLUX_USERNAME)",
    )
    p.add_argument(
        "--password",
        default=os.environ.get("INFLUX_PASSWORD"),
        help="password for InfluxDB 1.x with auth (default: $INFLUX_PASSWORD)",
    )


def client_from(args: argparse.Namespace) -> InfluxQLClient:
    if not args.url.startswith(("http://", "https://")):
        raise CommandError(f"--url must start with http:// or https://, not {args.url!r}")
    return InfluxQLClient(args.url, token=args.token, username=args.username, password=args.password)


def add_scope_flags(p: argparse.ArgumentParser, since: str) -> None:
    p.add_argument(
        "--db",
        help="database: district_NAME (raw readings) or city (rollups); "
        "default: district_D for one --district D, else city",
    )
    p.add_argument(
        "--district", action="append", default=[], metavar="D", help="only this district (repeat for more)"
    )
    p.add_argument(
        "--zone", action="append", default=[], metavar="Z", help="only this zone (repeat for more)"
    )
    p.add_argument(
        "--since",
        default=since,
        help="start: a duration back from --until (24h, 7d) or an ISO time (default: %(default)s)",
    )
    p.add_argument("--until", help="end: an ISO time or a duration back from now (default: now)")
    p.add_argument(
        "--layer",
        choices=("auto", "raw", "rollup"),
        default="auto",
        help="read raw readings or one-minute rollups (default: rollups for the city database)",
    )


def question_from(args: argparse.Namespace) -> questions.Question:
    db = args.db or (f"district_{args.district[0]}" if len(args.district) == 1 else "city")
    try:
        window = Window.parse(args.since, args.until)
    except ScopeError as err:
        raise CommandError(str(err), 2) from None
    return questions.Question(
        client_from(args),
        db,
        window,
        Place(tuple(args.district), tuple(args.zone)),
        questions.layer_for(db, args.layer),
    )


def add_output_flags(p: argparse.ArgumentParser) -> None:
    add_format_flags(p)
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.add_argument("--section", help="print only this part of the answer (the JSON key)")


def print_answer(answer: Answer, args: argparse.Namespace) -> None:
    if args.section:
        answer = [s for s in answer if s.name == args.section]
        if not answer:
            raise CommandError(f"no section {args.section!r} in this answer", 2)
    if args.json:
        print_json(
            {s.name: s.rows for s in answer} if len(answer) > 1 or not args.section else answer[0].rows
        )
    elif args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        for i, section in enumerate(answer):
            if len(answer) > 1:
                # Several tables in one stream: a comment line names each (pandas: comment="#").
                sys.stdout.write(("\n" if i else "") + f"# {section.name}\n")
            writer.writerow(section.columns)
            for row in section.rows:
                writer.writerow([_csv_value(row.get(c)) for c in section.columns])
    else:
        for section in answer:
            columns = section.table_columns or section.columns
            if section.rows:
                print_table(
                    columns,
                    ([_table_value(row.get(c)) for c in columns] for row in section.rows),
                    title=section.title,
                )
            else:
                print(f"{section.title}: none")


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


def _table_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query",
        help="answer the daily questions of city operations from InfluxDB",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    qsub = p.add_subparsers(title="questions", metavar="QUESTION")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    def question(
        name: str, help_text: str, since: str, run: Callable[[argparse.Namespace], Answer]
    ) -> argparse.ArgumentParser:
        qp = qsub.add_parser(name, help=help_text, description=help_text)
        add_connection_flags(qp)
        add_scope_flags(qp, since)
        add_output_flags(qp)
        qp.set_defaults(func=lambda args: _answer(args, run))
        return qp

    question(
        "parking",
        "free and occupied spaces now per zone, occupancy rate and turnover per hour",
        "24h",
        lambda a: questions.parking(question_from(a)),
    )
    air = question(
        "air",
        "hourly PM2.5 / PM10 per zone with the China AQI category (HJ 633-2012) and the worst nodes",
        "24h",
        lambda a: questions.air(question_from(a), a.worst),
    )
    air.add_argument(
        "--worst", type=_positive, default=5, metavar="N", help="how many worst nodes (default: 5)"
    )
    question(
        "alarms",
        "alarms still open (raised and not cleared) with node, place and age",
        "30d",
        lambda a: questions.alarms(question_from(a)),
    )
    nodes = question(
        "nodes",
        "offline nodes, low batteries and readings lost on the way (seq gaps), by zone",
        "24h",
        lambda a: questions.nodes(question_from(a), a.all),
    )
    nodes.add_argument("--all", action="store_true", help="list every node, not only those with a problem")

    raw = qsub.add_parser(
        "influxql",
        help="run any InfluxQL statement; same output formats",
        description="Run any InfluxQL statement; times are printed as ISO 8601 UTC.",
    )
    raw.add_argument(
        "statement", help=f'InfluxQL, e.g. \'SELECT last("online") FROM "{NODE_HEALTH}" GROUP BY "node"\''
    )
    raw.add_argument("--db", help="database the statement runs in")
    add_connection_flags(raw)
    add_output_flags(raw)
    raw.set_defaults(
        func=lambda args: _answer(args, lambda a: questions.influxql(client_from(a), a.db, a.statement))
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def _answer(args: argparse.Namespace, run: Callable[[argparse.Namespace], Answer]) -> int:
    try:
        answer = run(args)
    except QueryError as err:
        raise CommandError(str(err)) from None
    print_answer(answer, args)
    return 0
