"""The city's alarm dispatch in the demo: a private Alertmanager, and for each district an
institution that answers for its alarms, told through a webhook the demo runs itself.

The responsibility file is written as a city would write it (demo/README.md shows it);
Alertmanager's configuration is generated from it by `urbansense alarms config`, run as
a command like the edges are, and Alertmanager's state lives in `<state>/alertmanager/`.
Each staged alarm's notification is taken from the webhook receiver: which institution
was told, and how long after the stimulus.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hil.services import AlertmanagerServer, ServiceError
from hil.stack.edges import EdgeSite
from hil.webhook import Notification, WebhookReceiver

NOTIFY = {"group_wait": "1s", "group_interval": "10s", "repeat_interval": "4h"}


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string of printable text is a TOML string


def responsibility_toml(districts: list[str], webhook: WebhookReceiver, am_url: str) -> str:
    """Each district's operations centre answers for its alarms; a critical alarm nobody
    acknowledges goes to the district's duty officer, then the city's."""
    lines = [
        "# Who answers for which alarm in the demo city (see ops/README.md, alarm dispatch).",
        "[alertmanager]",
        f"url = {_q(am_url)}",
        "",
        "[notify]",
        *(f"{k} = {_q(v)}" for k, v in NOTIFY.items()),
        "",
    ]
    for d in districts:
        for key, name, within in (
            (f"{d}-ops", f"{d.title()} operations centre", "10m"),
            (f"{d}-duty", f"{d.title()} duty officer", "10m"),
        ):
            lines += [
                f"[institutions.{key}]",
                f"name = {_q(name)}",
                f"webhook = [{_q(webhook.url(key))}]",
                f"ack_within = {_q(within)}",
                "",
            ]
    lines += [
        "[institutions.city-duty]",
        'name = "City duty officer"',
        f"webhook = [{_q(webhook.url('city-duty'))}]",
        "",
    ]
    for d in districts:
        lines += ["[[rule]]", f"district = {_q(d)}", f"institution = {_q(d + '-ops')}", ""]
    lines += ["[default]", 'institution = "city-duty"', "", "[escalation]", 'city = "city-duty"', ""]
    lines += ["[escalation.districts]", *(f"{d} = {_q(d + '-duty')}" for d in districts), ""]
    # Gas in a well is the alarm to act on: its cover's alarms on the same node wait.
    lines += ["[[inhibit]]", 'when = ["ch4", "h2s"]', 'mute = ["cover-open", "tilt"]', ""]
    return "\n".join(lines)


class CityDispatch:
    def __init__(self, state_dir: Path, districts: list[str], progress: Callable[[str], None]) -> None:
        self.folder = state_dir / "alertmanager"
        self.districts = districts
        self.progress = progress
        self.webhook = WebhookReceiver()
        self.alertmanager = AlertmanagerServer(self.folder, config="")

    def start(self) -> CityDispatch:
        self.webhook.start()
        self.folder.mkdir(parents=True, exist_ok=True)
        resp = self.folder / "responsibility.toml"
        resp.write_text(responsibility_toml(self.districts, self.webhook, self.alertmanager.url))
        config = self.folder / "alertmanager.yml"
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "alarms", "config", str(resp), "--out", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise ServiceError(f"alarms config: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        self.alertmanager.config = config.read_text()
        self.progress(f"starting Alertmanager on {self.alertmanager.url} (responsibility: {resp})")
        self.alertmanager.start()
        return self

    def stop(self) -> None:
        self.alertmanager.stop()
        self.webhook.stop()

    def edge_config(self, site: EdgeSite, nodes: dict[str, str]) -> str:
        """The edges' [alertmanager] section, with the place names of their nodes."""
        places = "\n".join(f"{_q(node)} = {_q(place)}" for node, place in sorted(nodes.items()))
        return f"\n[alertmanager]\nurl = {_q(self.alertmanager.url)}\nrepost_s = 15\n\n[alertmanager.places]\n{places}\n"

    def notified(self, node: str, event: str, since: float, timeout: float = 0.0) -> Notification | None:
        """The first notification of this alarm, raised, received since `since` (monotonic)."""

        def first(seen: list[Notification]) -> Notification | None:
            for n in seen:
                if n.received >= since and n.alerts_matching("firing", node=node, event=event):
                    return n
            return None

        return self.webhook.wait(first, timeout)
