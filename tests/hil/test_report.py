"""JUnit XML and the readable summary carry every expectation with its measured figure."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from rich.console import Console

from hil import junit, report
from hil.results import ExpectationResult, ScenarioResult


def _results() -> list[ScenarioResult]:
    good = ScenarioResult(
        "leak-sleeping-node",
        "hil/scenarios/leak-sleeping-node.yaml",
        boards=["l-0001: virtual"],
        duration_s=9.5,
        expectations=[
            ExpectationResult("leak alarm in InfluxDB", True, "after 142 ms, limit 1000 ms", 142.0)
        ],
    )
    bad = ScenarioResult(
        "impossible",
        "x.yaml",
        boards=["a-0001: virtual"],
        duration_s=4.0,
        expectations=[
            ExpectationResult("pm25 alarm on the alarms topic", False, "after 612 ms, limit 1 ms", 612.0),
            ExpectationResult("sequence of a-0001", True, "14 readings, no gaps", 14),
        ],
        logs={"edge": "edge log line"},
    )
    broken = ScenarioResult("broken", "y.yaml", error="board a-0001 not online after 60 s")
    return [good, bad, broken]


def test_junit_counts_and_carries_figures(tmp_path):
    path = tmp_path / "out" / "junit.xml"
    junit.write(_results(), path)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "1")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"leak-sleeping-node", "impossible", "broken"}
    ok_case = suites["leak-sleeping-node"].find("testcase")
    assert ok_case.find("failure") is None
    assert ok_case.find("system-out").text == "after 142 ms, limit 1000 ms"
    failure = suites["impossible"].find("testcase/failure")
    assert failure.get("message") == "after 612 ms, limit 1 ms"
    assert "edge log line" in suites["impossible"].find("system-err").text
    assert suites["broken"].find("testcase/error").get("message") == "board a-0001 not online after 60 s"


def test_plain_summary_has_one_line_per_expectation():
    out = io.StringIO()
    report.print_summary(_results(), Console(file=out, force_terminal=False, width=200))
    text = out.getvalue()
    assert "PASS leak-sleeping-node" in text
    assert "[ok] leak alarm in InfluxDB: after 142 ms, limit 1000 ms" in text
    assert "[FAILED] pm25 alarm on the alarms topic: after 612 ms, limit 1 ms" in text
    assert "FAIL broken" in text and "error: board a-0001 not online after 60 s" in text
    assert text.rstrip().endswith("1 of 3 scenarios passed")


def test_terminal_summary_is_a_table_with_the_figures():
    out = io.StringIO()
    report.print_summary(_results(), Console(file=out, force_terminal=True, width=200))
    text = out.getvalue()
    assert "after 612 ms, limit 1 ms" in text and "FAIL" in text and "PASS" in text


def test_a_scenario_without_expectations_does_not_pass():
    assert not ScenarioResult("empty", "e.yaml").passed
