"""JUnit XML for CI systems: one <testsuite> per scenario, one <testcase> per expectation.

Written with the standard library's ElementTree: the format is a handful of elements, and
the PyPI writers for it are unmaintained."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from hil.results import ScenarioResult

# XML 1.0 cannot carry most control characters; board consoles print raw-REPL bytes (^A,
# ^D) that would make the file unreadable to every CI parser.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(text: str) -> str:
    return _NOT_XML.sub("?", text)


def build(results: list[ScenarioResult]) -> ET.ElementTree:
    root = ET.Element(
        "testsuites",
        name="urbansense-hil",
        tests=str(sum(max(1, len(r.expectations)) for r in results)),
        failures=str(sum(1 for r in results for e in r.expectations if not e.passed)),
        errors=str(sum(1 for r in results if r.error)),
        time=f"{sum(r.duration_s for r in results):.3f}",
    )
    for result in results:
        failures = sum(1 for e in result.expectations if not e.passed)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=result.name,
            file=result.source,
            tests=str(max(1, len(result.expectations))),
            failures=str(failures),
            errors="1" if result.error else "0",
            time=f"{result.duration_s:.3f}",
        )
        props = ET.SubElement(suite, "properties")
        for board in result.boards:
            ET.SubElement(props, "property", name="board", value=board)
        if result.error:
            case = ET.SubElement(suite, "testcase", classname=result.name, name="run")
            ET.SubElement(case, "error", message=_text(result.error)).text = _text(result.error)
        for exp in result.expectations:
            case = ET.SubElement(suite, "testcase", classname=result.name, name=exp.label)
            ET.SubElement(case, "system-out").text = _text(exp.measured)
            if not exp.passed:
                ET.SubElement(case, "failure", message=_text(exp.measured)).text = _text(exp.measured)
        if not result.passed and result.logs:
            ET.SubElement(suite, "system-err").text = _text(
                "\n\n".join(f"--- {name} ---\n{tail}" for name, tail in result.logs.items())
            )
    ET.indent(root)
    return ET.ElementTree(root)


def write(results: list[ScenarioResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    build(results).write(path, encoding="utf-8", xml_declaration=True)
