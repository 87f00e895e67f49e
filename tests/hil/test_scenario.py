"""Scenario files: the shipped ones load, and a bad file is refused with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.scenario import AlarmExpect, CommandStep, ScenarioError, StimulusStep, command_payload, load, parse

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "hil" / "scenarios").glob("*.yaml"))

BASE_YAML = """\
name: tiny
boards:
  - {node: l-0001, kind: leak, interval_s: 2}
timeline:
  - {at: 1, id: wet, do: stimulus, node: l-0001, set: {wet: true}}
expect:
  - {type: alarm, node: l-0001, event: leak, after: wet, within_ms: 500}
"""


def test_the_issue_scenarios_are_shipped():
    names = {load(p).name for p in SCENARIOS}
    assert {
        "parking-arrival-departure",
        "air-quality-threshold",
        "leak-sleeping-node",
        "manhole-tilt-gas",
        "broker-outage-replay",
        "remote-config-change",
    } <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_is_valid_and_named_after_its_file(path):
    scenario = load(path)
    assert scenario.name == path.stem
    assert scenario.length_s > scenario.settle_s


def test_yaml_and_toml_give_the_same_scenario(tmp_path):
    (tmp_path / "tiny.yaml").write_text(BASE_YAML)
    (tmp_path / "tiny.toml").write_text("""\
name = "tiny"
[[boards]]
node = "l-0001"
kind = "leak"
interval_s = 2
[[timeline]]
at = 1
id = "wet"
do = "stimulus"
node = "l-0001"
set = {wet = true}
[[expect]]
type = "alarm"
node = "l-0001"
event = "leak"
after = "wet"
within_ms = 500
""")
    from_yaml, from_toml = load(tmp_path / "tiny.yaml"), load(tmp_path / "tiny.toml")
    assert from_yaml == from_toml
    step = from_yaml.timeline[0]
    assert isinstance(step, StimulusStep) and step.set == {"wet": True}
    assert isinstance(from_yaml.expect[0], AlarmExpect)


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("within_ms: 500}", "withn_ms: 500}", "expect.0.withn_ms: unknown key"),
        ("do: stimulus", "do: explode", "timeline.0.do: unknown value 'explode'"),
        (
            "set: {wet: true}",
            "set: {tilt_deg: 15}",
            "timeline.0.set: 'tilt_deg' is not a stimulus of a leak node",
        ),
        ("after: wet,", "after: dry,", "expect.0.after: no timeline step with id 'dry'"),
        ("event: leak", "event: tilt", "expect.0.event: 'tilt' is not an event of a leak node"),
        ("kind: leak", "kind: toaster", "boards.0.kind:"),
        ("node: l-0001, kind", "node: L_0001, kind", "boards.0.node:"),
        ("at: 1,", "at: soon,", "timeline.0.at:"),
        ("at: 1,", "at: -1,", "timeline.0.at:"),
    ],
)
def test_bad_key_is_named(tmp_path, old, new, message):
    assert old in BASE_YAML
    path = tmp_path / "bad.yaml"
    path.write_text(BASE_YAML.replace(old, new))
    with pytest.raises(ScenarioError) as err:
        load(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load(tmp_path / "broken.yaml")
    (tmp_path / "notes.txt").write_text(BASE_YAML)
    with pytest.raises(ScenarioError, match=r"\.yaml, \.yml or \.toml"):
        load(tmp_path / "notes.txt")
    with pytest.raises(ScenarioError, match="a mapping of keys"):
        parse(["a", "list"], "list.yaml")


def test_ack_expectation_must_follow_a_command():
    data = {
        "name": "x",
        "boards": [{"node": "m-1", "kind": "manhole"}],
        "timeline": [{"at": 1, "id": "tilt", "do": "stimulus", "node": "m-1", "set": {"tilt_deg": 3}}],
        "expect": [{"type": "ack", "after": "tilt", "within_ms": 100}],
    }
    with pytest.raises(ScenarioError, match="step 'tilt' is not a command"):
        parse(data)


def test_command_step_encodes_a_protocol_command():
    from protocols.codec import decode_command

    step = CommandStep(at=1, id="set-1", do="command", node="m-1", cmd="set", args={"interval_s": 30})
    cmd = decode_command(command_payload(step))
    assert cmd["id"] == "set-1" and cmd["cmd"] == "set" and cmd["args"] == {"interval_s": 30}
