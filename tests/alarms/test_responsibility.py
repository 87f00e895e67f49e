"""The responsibility file: refused with the key that is wrong, a default route required,
and the route Alertmanager resolves for a node and event (asked of amtool)."""

from __future__ import annotations

import json

import pytest

from edge.config import ConfigError, parse_config
from hil.webhook import WebhookReceiver
from ops.dispatch import amconfig
from ops.dispatch.responsibility import ResponsibilityError, load, parse
from tests.support.cli import urbansense
from tests.support.dispatch import responsibility, write_toml

HOOKS = WebhookReceiver()  # only its URLs are used: never started


def _refused(data: dict) -> list[str]:
    with pytest.raises(ResponsibilityError) as err:
        parse(data, "r.toml")
    return err.value.problems


def test_a_file_without_a_default_route_is_refused():
    data = responsibility(HOOKS)
    del data["default"]
    assert _refused(data) == ["default: missing (required): a config without a default route is refused"]


@pytest.mark.parametrize(
    "change, problem",
    [
        (
            {"rule": [{"district": "xuhui", "institution": "xuhui-gas"}]},
            "rule[0].institution: no institution",
        ),
        (
            {"rule": [{"district": "xuhui", "kinds": ["boat"], "institution": "city-duty"}]},
            "rule[0].kinds[0]",
        ),
        ({"rule": [{"events": ["fire"], "institution": "city-duty"}]}, "rule[0].events[0]"),
        ({"rule": [{"district": "Xu Hui", "institution": "city-duty"}]}, "rule[0].district"),
        ({"notify": {"group_wait": "soon"}}, "notify.group_wait"),
        ({"escalation": {"city": "mayor"}}, "escalation.city: no institution 'mayor'"),
        ({"institutions": {"city-duty": {"name": "City"}}}, "institutions.city-duty: an institution needs"),
        ({"institutions": {"city-duty": {"name": "City", "email": ["d@c.example"]}}}, "smtp: missing"),
        ({"routes": []}, "routes: unknown key"),
    ],
)
def test_a_bad_key_is_named(change, problem):
    data = responsibility(HOOKS)
    if "institutions" in change:
        change = {"institutions": {**data["institutions"], **change["institutions"]}}
    data = {**data, **change}
    problems = _refused(data)
    assert any(p.startswith(problem) for p in problems), problems


def test_the_generated_config_routes_levels_and_inhibits():
    data = responsibility(HOOKS, inhibit=[{"when": ["ch4", "h2s"], "mute": ["cover-open", "tilt"]}])
    am = amconfig.generate(parse(data))
    routes = am["route"]["routes"]
    assert am["route"]["receiver"] == "city-duty"
    assert [r["matchers"] for r in routes] == [
        ['level="3"'],
        ['level="2"', 'district="xuhui"'],
        ['level="2"'],
        ['district="xuhui"', 'kind=~"leak|manhole"'],
    ]
    assert am["inhibit_rules"] == [
        {
            "source_matchers": ['event=~"ch4|h2s"'],
            "target_matchers": ['event=~"cover-open|tilt"'],
            "equal": ["node"],
        }
    ]
    assert {r["name"] for r in am["receivers"]} == {"xuhui-water", "xuhui-duty", "city-duty"}


def test_check_config_shows_the_route_alertmanager_resolves(tmp_path):
    path = write_toml(tmp_path / "r.toml", responsibility(HOOKS))
    done = urbansense(
        "alarms", "check-config", str(path), "--district", "xuhui", "--zone", "caohejing",
        "--node", "m-0001", "--event", "ch4", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    route = json.loads(done.stdout)["route"]
    assert [(lv["level"], lv["receivers"]) for lv in route] == [
        (1, ["xuhui-water"]),
        (2, ["xuhui-duty"]),
        (3, ["city-duty"]),
    ]
    assert route[0]["ack_within"] == "10m" and route[2]["ack_within"] is None
    # A warning does not escalate; minhang has no rule of its own: the default.
    done = urbansense(
        "alarms", "check-config", str(path), "--district", "minhang", "--event", "pm25", "--json"
    )
    assert [(lv["level"], lv["receivers"]) for lv in json.loads(done.stdout)["route"]] == [(1, ["city-duty"])]
    text = urbansense("alarms", "check-config", str(path), "--district", "xuhui", "--event", "leak")
    assert "level 2: xuhui-duty (Xuhui duty officer)" in text.stdout


def test_check_config_refuses_a_bad_file_naming_the_key(tmp_path):
    data = responsibility(HOOKS)
    del data["default"]
    path = write_toml(tmp_path / "r.toml", data)
    done = urbansense("alarms", "check-config", str(path))
    assert done.returncode == 2
    assert "default: missing (required): a config without a default route is refused" in done.stderr
    bad_event = urbansense("alarms", "check-config", str(write_toml(tmp_path / "ok.toml", responsibility(HOOKS))), "--event", "fire")  # fmt: skip
    assert bad_event.returncode == 1 and "unknown event 'fire' (known: occupancy, leak" in bad_event.stderr


@pytest.mark.parametrize(
    "section, problem",
    [
        ({"urll": "http://x"}, "alertmanager.urll: unknown key"),
        ({"url": "ftp://x"}, "alertmanager.url: url must start with http:// or https://"),
        ({"url": "http://x", "severities": ["urgent"]}, "alertmanager.severities[0]"),
        (
            {"url": "http://x", "repost_s": 60, "hold_s": 90},
            "alertmanager: hold_s must be at least twice repost_s",
        ),
        ({"url": "http://x", "min_firing_s": -1}, "alertmanager.min_firing_s"),
    ],
)
def test_the_edges_alertmanager_section_names_the_bad_key(tmp_path, section, problem):
    data = {
        "site": {"district": "xuhui", "zone": "caohejing"},
        "mqtt": {"client_id": "e"},
        "sink": [{"name": "d", "url": "http://127.0.0.1:1", "database": "d"}],
        "alertmanager": section,
    }
    with pytest.raises(ConfigError) as err:
        parse_config(data, tmp_path)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_the_shipped_example_is_valid_and_its_generated_config_up_to_date(repo_root):
    folder = repo_root / "deploy" / "alertmanager"
    resp = load(folder / "responsibility.example.toml")
    assert (folder / "alertmanager.example.yml").read_text() == amconfig.render(resp)
