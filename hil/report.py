"""The readable summary of a scenario run: every expectation with its measured figure."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from hil.results import ScenarioResult


def lines(result: ScenarioResult) -> list[str]:
    """Plain text, one line per expectation: for logs, pipes and the JUnit file."""
    head = f"{'PASS' if result.passed else 'FAIL'} {result.name} ({result.source}, {result.duration_s:.1f} s)"
    out = [head]
    if result.error:
        out.append(f"  error: {result.error}")
    for exp in result.expectations:
        out.append(f"  [{'ok' if exp.passed else 'FAILED'}] {exp.label}: {exp.measured}")
    return out


def table(result: ScenarioResult) -> Table:
    verdict = "[green]PASS[/]" if result.passed else "[red]FAIL[/]"
    title = f"{verdict} {result.name}  ({result.duration_s:.1f} s; {', '.join(result.boards)})"
    tbl = Table(title=title, title_justify="left", show_lines=False)
    tbl.add_column("", width=2)
    tbl.add_column("expectation")
    tbl.add_column("measured")
    if result.error:
        tbl.add_row("[red]✗[/]", "run", Text(result.error))
    for exp in result.expectations:
        tbl.add_row("[green]✓[/]" if exp.passed else "[red]✗[/]", Text(exp.label), Text(exp.measured))
    return tbl


def print_summary(results: list[ScenarioResult], console: Console | None = None) -> None:
    console = console or Console()
    for result in results:
        if console.is_terminal:
            console.print(table(result))
        else:
            for line in lines(result):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
    passed = sum(1 for r in results if r.passed)
    console.print(
        f"{passed} of {len(results)} scenarios passed", markup=False, highlight=False, soft_wrap=True
    )
