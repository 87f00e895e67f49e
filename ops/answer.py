"""The shape of every operations answer: named sections, each a list of rows with fixed
columns, so the CLI can print any of them as a table, CSV or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Section:
    name: str  # key in JSON, selectable with --section
    title: str  # heading of the table
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    # The columns a table for people shows (default: all); CSV and JSON carry all.
    table_columns: list[str] | None = None


Answer = list[Section]


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)
