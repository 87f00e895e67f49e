"""Who answers for the demo city's alarms: each district's operations centre, then its
duty officer, then the city's, all told through the webhook the demo runs itself
(hil/stack/dispatch.py). Written as a city would write its responsibility file; the
demo leaves it in `<state>/alertmanager/responsibility.toml`."""

from __future__ import annotations

import json

from hil.stack.edges import EdgeSite
from hil.webhook import WebhookReceiver

NOTIFY = {"group_wait": "1s", "group_interval": "10s", "repeat_interval": "4h"}


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string of printable text is a TOML string


def responsibility_toml(districts: list[str], webhook: WebhookReceiver, am_url: str) -> str:
    lines = ["# Who answers for which alarm in the demo city (ops/README.md, alarm dispatch).", ""]
    lines += ["[alertmanager]", f"url = {_q(am_url)}", "", "[notify]"]
    lines += [f"{k} = {_q(v)}" for k, v in NOTIFY.items()] + [""]

    def institution(key: str, name: str) -> list[str]:
        return [f"[institutions.{key}]", f"name = {_q(name)}", f"webhook = [{_q(webhook.url(key))}]", ""]

    for d in districts:
        lines += institution(f"{d}-ops", f"{d.title()} operations centre")
        lines += institution(f"{d}-duty", f"{d.title()} duty officer")
    lines += institution("city-duty", "City duty officer")
    for d in districts:
        lines += ["[[rule]]", f"district = {_q(d)}", f"institution = {_q(d + '-ops')}", ""]
    lines += ["[default]", 'institution = "city-duty"', "", "[escalation]", 'city = "city-duty"', ""]
    lines += ["[escalation.districts]", *(f"{d} = {_q(d + '-duty')}" for d in districts), ""]
    # Gas in a well is the alarm to act on: its cover's alarms on the same node wait.
    lines += ["[[inhibit]]", 'when = ["ch4", "h2s"]', 'mute = ["cover-open", "tilt"]', ""]
    return "\n".join(lines)


def places(site: EdgeSite, nodes: dict[str, str]) -> dict[str, str]:
    """A place name for each node of a zone ({node: kind} in), as a person would say it."""
    count: dict[str, int] = {}
    out = {}
    for node, kind in nodes.items():
        count[kind] = count.get(kind, 0) + 1
        out[node] = f"{site.zone.title()}, {kind} no. {count[kind]}"
    return out
