"""`urbansense hil run hil/scenarios/*` on virtual boards, as a rig runs it: every shipped
scenario passes, and a scenario whose limit cannot be met fails with its measured figure.

All of them run in one command (two side by side, each with its own broker, InfluxDB and
edge) to keep the suite's time down; the impossible one makes the exit code 1. One test
checks the whole run: tests sharing a module's fixture may run on two workers of the
suite, each running the fixture (here minutes of boards and servers) again."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hil.scenario import load
from tests.support.cli import URBANSENSE

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "hil" / "scenarios").glob("*.yaml"))


def run_all(tmp: Path):
    # The air-quality scenario with a limit no system meets: 1 ms from stimulus to alarm.
    source = next(p for p in SCENARIOS if p.stem == "air-quality-threshold").read_text()
    impossible = tmp / "impossible-limit.yaml"
    text = source.replace("name: air-quality-threshold", "name: impossible-limit")
    text = text.replace("after: pm25-rises, within_ms: 4000}", "after: pm25-rises, within_ms: 1}", 1)
    assert text != source
    impossible.write_text(text)
    junit = tmp / "junit.xml"
    proc = subprocess.run(
        [
            URBANSENSE,
            "hil",
            "run",
            *map(str, SCENARIOS),
            str(impossible),
            "--jobs",
            "2",
            "--junit",
            str(junit),
            "--workdir",
            str(tmp / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, ET.parse(junit).getroot() if junit.exists() else None


def _suites(root) -> dict:
    return {s.get("name"): s for s in root.findall("testsuite")}


def scenario_problems(root, path: Path) -> list:
    """What is wrong with one shipped scenario's results (nothing: it passed)."""
    suite = _suites(root).get(load(path).name)
    if suite is None:
        return ["no results"]
    problems = [
        (c.get("name"), bad.get("message"))
        for c in suite.findall("testcase")
        for bad in (c.find("failure"), c.find("error"))
        if bad is not None
    ]
    if problems:
        return [*problems, (suite.findtext("system-err") or "")[-3000:]]
    if len(suite.findall("testcase")) != len(load(path).expect):
        return [f"{len(suite.findall('testcase'))} results for {len(load(path).expect)} expectations"]
    if not any("virtual" in p.get("value") for p in suite.findall("properties/property")):
        return ["not run on a virtual board"]
    return []


@pytest.mark.timeout(660)  # the run's own limit is 600 s: it says what hung, not the guard
def test_shipped_scenarios_pass_and_an_impossible_limit_fails_with_its_figure(tmp_path):
    proc, root = run_all(tmp_path)
    assert root is not None, proc.stderr[-3000:]
    problems = {path.stem: scenario_problems(root, path) for path in SCENARIOS}
    assert not {name: p for name, p in problems.items() if p}
    assert proc.returncode == 1
    suite = _suites(root)["impossible-limit"]
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["pm25 alarm on the alarms topic"]
    message = failed[0].find("failure").get("message")
    match = re.fullmatch(r"after (\d+) ms, limit 1 ms", message)
    assert match and int(match.group(1)) > 1, message
    # the readable summary carries the same figure
    assert f"[FAILED] pm25 alarm on the alarms topic: {message}" in proc.stdout
    assert (
        "7 of 8 scenarios passed" in proc.stdout
        or f"{len(SCENARIOS)} of {len(SCENARIOS) + 1} scenarios passed" in proc.stdout
    )
