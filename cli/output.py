"""Shared output conventions: a human-readable table by default, `--json` for scripts.

Tables never cut what identifies a row (a node id, a time, a topic): those columns keep
their full width, the others wrap. On a terminal narrower than that, the table is printed
at the width it needs and the terminal wraps its lines; piped or redirected, a table is as
wide as its longest row. Cells are plain text, never rich markup, so a `[a-z]` in a
message prints as it is, and control characters print escaped (`printable`): a node
chooses its firmware name, field names and topic, and must not reach the terminal raw."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Columns that say what a row is about, by name (the first column of a table is one too).
IDENTIFYING = frozenset(
    {
        "node",
        "port",
        "time",
        "hour",
        "raised_at",
        "last_seen",
        "last seen",
        "topic",
        "database",
        "measurement",
        "district",
        "zone",
        "name",
        "event",
        "bundle",
        "version",
    }
)
MEASURE_WIDTH = 100_000  # "unlimited", to measure a table's natural width


def add_format_flags(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def printable(value: Any) -> str:
    """The text of a value with every character a terminal would act on written out as
    its escape (ESC as \\x1b, a bidi override as \\u202e), so it cannot move the cursor
    or rewrite lines on an operator's screen."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def _cell(value: Any) -> Text:
    if isinstance(value, Text):
        if value.plain.isprintable():
            return value
        return Text(printable(value.plain), style=value.style)  # its spans would not fit the escapes
    return Text(printable(value))


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    title: str | None = None,
    console: Console | None = None,
) -> None:
    """Print a table on `console` (default: stdout) at the width it needs (above)."""
    cells = [[_cell(v) for v in row] for row in rows]
    table = Table(title=Text(title) if title else None, show_lines=False)
    for i, col in enumerate(columns):
        if i == 0 or col in IDENTIFYING:
            longest = max([len(col), *(row[i].cell_len for row in cells if i < len(row))])
            table.add_column(Text(col), no_wrap=True, min_width=longest)
        else:
            table.add_column(Text(col), overflow="fold")
    for row in cells:
        table.add_row(*row)
    console = console or Console()
    needed = Console(width=MEASURE_WIDTH).measure(table)
    if not console.is_terminal:
        console = Console(file=console.file, width=max(console.width, needed.maximum))
    elif needed.minimum > console.width:
        console = Console(file=console.file, width=needed.minimum)
    console.print(table)
