"""`urbansense query`: the daily questions of city operations, answered from InfluxDB.

All answers are InfluxQL over the v1 `/query` API, which InfluxDB 1.x, InfluxDB 2.x (with
a DBRP mapping of the bucket, see deploy/influxdb/README.md) and InfluxDB 3.x all answer."""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from cli.errors import CommandError
from cli.output import add_format_flags, print_json, print_table
from ops import questions
from ops.answer import Answer
from ops.client import InfluxQLClient, QueryError
from ops.scope import Place, ScopeError, Window, check_database
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


# A time back from now may be written with a sign (`--since -1h`); argparse takes any value
# that starts with "-" for an option unless it looks like a negative number, and has no
# public way to widen that, so the parser's own matcher is widened for these values.
_NEGATIVE_VALUE = re.compile(r"^-\d+(?:\.\d+)?[smhdw]?$")


def add_scope_flags(p: argparse.ArgumentParser, since: str) -> None:
    p._negative_number_matcher = _NEGATIVE_VALUE
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
        help="start: a duration back from --until (24h, 7d; -24h too) or an ISO time, UTC unless it "
        "has a zone (2026-11-21T08:00:00+08:00) (default: %(default)s)",
    )
    p.add_argument("--until", help="end: an ISO time or a duration back from now (default: now)")
    p.add_argument(
        "--layer",
        choices=("auto", "raw", "rollup"),
        default="auto",
        help="read raw readings or one-minute rollups (default: rollups for the city database)",
    )


def question_from(args: argparse.Namespace) -> questions.Question:
    """The question the options ask, checked: a database, district or zone that does not
    exist is a usage error listing the ones that do (ops/scope.py)."""
    db = args.db or (f"district_{args.district[0]}" if len(args.district) == 1 else "city")
    try:
        window = Window.parse(args.since, args.until)
    except ScopeError as err:
        raise CommandError(str(err), 2) from None
    for note in window.notes:
        print(f"urbansense: note: {note}", file=sys.stderr)
    question = questions.Question(
        client_from(args),
        db,
        window,
        Place(tuple(args.district), tuple(args.zone)),
        questions.layer_for(db, args.layer),
    )
    try:
        question.check()
    except ScopeError as err:
        raise CommandError(str(err), 2) from None
    except QueryError as err:
        raise CommandError(with_hint(str(err), args.url)) from None
    return question


def add_output_flags(p: argparse.ArgumentParser) -> None:
    add_format_flags(p)
    p.add_argument(
        "--csv",
        action="store_true",
        help="print CSV instead of a table (an answer of several parts gets a `section` column first)",
    )
    p.add_argument("--section", help="print only this part of the answer (the JSON key)")


def print_answer(answer: Answer, args: argparse.Namespace) -> None:
    if args.section:
        chosen = [s for s in answer if s.name == args.section]
        if not chosen:
            names = ", ".join(s.name for s in answer)
            raise CommandError(f"no section {args.section!r} in this answer: its sections are {names}", 2)
        answer = chosen
    if args.json:
        print_json(
            {s.name: s.rows for s in answer} if len(answer) > 1 or not args.section else answer[0].rows
        )
    elif args.csv:
        _print_csv(answer)
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


def _print_csv(answer: Answer) -> None:
    """One CSV table that any reader takes. An answer of several parts gets a `section`
    column first and the columns of every part, in order, each row filling its own."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    if len(answer) == 1:
        columns, lead = answer[0].columns, []
    else:
        columns = list(dict.fromkeys(c for section in answer for c in section.columns))
        lead = ["section"]
    writer.writerow(lead + columns)
    for section in answer:
        name = [section.name] if lead else []
        for row in section.rows:
            writer.writerow(name + [_csv_value(row.get(c)) for c in columns])


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
    raw.set_defaults(func=lambda args: _answer(args, _influxql))


def _influxql(args: argparse.Namespace) -> Answer:
    client = client_from(args)
    if args.db:
        try:
            check_database(client, args.db)
        except ScopeError as err:
            raise CommandError(str(err), 2) from None
    return questions.influxql(client, args.db, args.statement)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def _answer(args: argparse.Namespace, run: Callable[[argparse.Namespace], Answer]) -> int:
    try:
        answer = run(args)
    except QueryError as err:
        raise CommandError(with_hint(str(err), args.url)) from None
    print_answer(answer, args)
    return 0


def with_hint(message: str, url: str) -> str:
    """An unreachable InfluxDB, with where to look: after a demo its data is served by
    `urbansense demo --serve` (the demo stops its own InfluxDB when it ends)."""
    if not message.startswith("cannot reach"):
        return message
    return (
        f"{message} (is InfluxDB running there? Give --url or $URBANSENSE_INFLUX_URL; after a "
        "demo, `urbansense demo --serve` serves its data and prints the URL)"
    )
