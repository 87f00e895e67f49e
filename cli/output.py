"""Shared output conventions: a human-readable table by default, `--json` for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def add_format_flags(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def printable(value: Any) -> str:
    """The text of a value with every character a terminal would act on written out as
    its escape (ESC as \\x1b, a bidi override as \\u202e): a node chooses its firmware
    name, field names and topics, and must not be able to move the cursor or rewrite lines
    on an operator's screen."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    """Every cell is literal text: rich markup in a value (`[/x]`, `[red]`) prints as
    written, never styles or breaks the table, and control characters print escaped."""
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[Text(printable(v)) for v in row])
    Console().print(table)
