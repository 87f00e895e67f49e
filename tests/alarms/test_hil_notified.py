"""The rig's `notified` expectation: checked with the scenario file before anything runs."""

from __future__ import annotations

import pytest

from hil import scenario as sc

BASE = {
    "name": "gas",
    "boards": [{"node": "m-0001", "kind": "manhole"}],
    "timeline": [{"at": 1, "id": "gas-rises", "do": "stimulus", "node": "m-0001", "set": {"ch4_lel": 25}}],
}
TOLD = {"type": "notified", "receiver": "gas-company", "node": "m-0001", "event": "ch4", "after": "gas-rises", "within_ms": 5000}  # fmt: skip


def test_a_notified_expectation_without_responsibility_makes_its_receiver_the_institution():
    scenario = sc.parse({**BASE, "expect": [TOLD]})
    assert isinstance(scenario.expect[0], sc.NotifiedExpect) and scenario.responsibility is None


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"receiver": "gas-co"},
            "expect.0.receiver: no institution 'gas-co' in responsibility (known: gas-company)",
        ),
        ({"event": "leak"}, "expect.0.event: 'leak' is not an event of a manhole node"),
        ({"after": "later"}, "expect.0.after: no timeline step with id 'later'"),
        ({"within_ms": 0}, "expect.0.within_ms: Input should be greater than 0"),
        ({"reciever": "x"}, "expect.0.reciever: unknown key"),
    ],
)
def test_a_bad_notified_expectation_names_its_key(change, message):
    resp = {"institutions": {"gas-company": {"name": "Gas"}}, "default": {"institution": "gas-company"}}
    with pytest.raises(sc.ScenarioError) as err:
        sc.parse({**BASE, "responsibility": resp, "expect": [{**TOLD, **change}]}, "gas.yaml")
    assert str(err.value).startswith(f"gas.yaml: {message}"), str(err.value)
