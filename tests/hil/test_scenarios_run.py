"""`urbansense hil run hil/scenarios/*` on virtual boards, as a rig runs it: every shipped
scenario passes, and a scenario whose limit cannot be met fails with its measured figure.

All of them run in one command (two side by side, each with its own broker, InfluxDB and
edge) to keep the suite's time down; the impossible one makes the exit code 1."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hil.scenario import load
from tests.support.cli import URBANSENSE

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "hil" / "scenarios").glob("*.yaml"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hil")
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


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_passes_on_a_virtual_board(run, path):
    proc, root = run
    assert root is not None, proc.stderr[-3000:]
    suite = _suites(root)[load(path).name]
    problems = [
        (c.get("name"), bad.get("message"))
        for c in suite.findall("testcase")
        for bad in (c.find("failure"), c.find("error"))
        if bad is not None
    ]
    assert not problems, (problems, (suite.findtext("system-err") or "")[-3000:])
    assert len(suite.findall("testcase")) == len(load(path).expect)
    assert any("virtual" in p.get("value") for p in suite.findall("properties/property"))


def test_impossible_limit_fails_with_the_measured_figure(run):
    proc, root = run
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
