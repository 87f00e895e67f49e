"""protocols/ is the one home of the names the other folders share: the kinds, the
identifier pattern, the JSON depth limit and the InfluxDB measurement names. A copy
elsewhere drifts silently (a fifth kind, a longer id); this test finds one in the CPython
code. The firmware keeps its own small copies (it cannot import the catalog or the
decoder without the heap they cost) and is checked against the protocol by
tests/protocol and tests/firmware."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from protocols import catalog, codec, names, topics

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("edge", "ops", "field", "hil", "demo", "cli", "bench")


def python_sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def string_constants(path: Path) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_the_slug_pattern_is_written_only_in_protocols() -> None:
    copies = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in python_sources()
        for line, text in string_constants(p)
        if "a-z0-9-]{1," in text and text.startswith("^")
    ]
    assert copies == [], f"slug patterns outside protocols/names.py: {copies}"
    assert re.fullmatch(names.SLUG_PATTERN, "a" * topics.ID_MAX)
    assert not re.fullmatch(names.SLUG_PATTERN, "a" * (topics.ID_MAX + 1))


def test_the_kinds_are_listed_only_in_the_catalog() -> None:
    listings = []
    for p in python_sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set) and all(
                isinstance(e, ast.Constant) for e in node.elts
            ):
                if {e.value for e in node.elts} == set(catalog.KINDS):
                    listings.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert listings == [], f"the four kinds listed outside protocols/catalog.py: {listings}"


def test_measurement_names_are_not_spelt_out_in_queries() -> None:
    pattern = re.compile(r'FROM "(%s|%s|\w+%s)"' % (names.EVENTS, names.NODE_HEALTH, names.ROLLUP_SUFFIX))
    spelt = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in python_sources()
        for line, text in string_constants(p)
        if pattern.search(text)
    ]
    assert spelt == [], f"InfluxQL naming a measurement instead of protocols.names: {spelt}"


def test_the_depth_limit_is_the_codecs() -> None:
    defined = [
        f"{p.relative_to(ROOT)}"
        for p in python_sources()
        if re.search(r"^MAX_DEPTH\s*=", p.read_text(), re.M)
    ]
    assert defined == [], f"MAX_DEPTH defined outside protocols/codec.py: {defined}"
    from edge import limits

    assert limits.MAX_DEPTH == codec.MAX_DEPTH
