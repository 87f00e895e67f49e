"""The resolved route of an alarm, asked of Alertmanager's own routing code.

`amtool` (shipped with Alertmanager in Debian's `prometheus-alertmanager`) runs a
configuration's routing tree on a label set (`amtool config routes test`) and checks a
configuration (`amtool check-config`). Asking it, rather than matching rules here, means
the answer is the one Alertmanager will give, with no second router to keep in step.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ops.dispatch.amconfig import render
from ops.dispatch.responsibility import Responsibility
from protocols import catalog


class RouteError(RuntimeError):
    """amtool is missing or failed; one line."""


def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        raise RouteError("amtool is not installed (Debian package prometheus-alertmanager)")
    return path


def _run(args: list[str]) -> str:
    try:
        done = subprocess.run([amtool(), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RouteError(f"amtool failed: {err}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise RouteError(f"amtool: {lines[-1]}")
    return done.stdout


def check(config_path: Path) -> str:
    """amtool check-config's verdict on a generated file (raises RouteError if refused)."""
    return _run(["check-config", str(config_path)]).strip()


@dataclass(frozen=True)
class Level:
    level: int
    receivers: list[str]
    ack_within: str | None  # None: the last level, or an alarm that does not escalate


@dataclass(frozen=True)
class ResolvedRoute:
    labels: dict[str, str]
    levels: list[Level]


def alarm_labels(
    district: str, zone: str, node: str, event: str, kind: str | None, severity: str | None
) -> dict:
    """The labels the edge gives this alarm (edge/alertmanager.py), for the route test."""
    if event not in catalog.EVENTS:
        raise RouteError(f"unknown event {event!r} (known: {', '.join(catalog.EVENTS)})")
    kinds, default_severity = catalog.EVENTS[event]
    if kind is None:
        if kinds == "*" or len(kinds) != 1:
            raise RouteError(f"event {event} is raised by several kinds: give --kind")
        kind = kinds[0]
    elif kinds != "*" and kind not in kinds:
        raise RouteError(f"a {kind} node does not raise {event} (raised by: {', '.join(kinds)})")
    return {
        "alertname": event,
        "district": district,
        "zone": zone,
        "node": node,
        "kind": kind,
        "event": event,
        "severity": severity or default_severity,
    }


def resolve(resp: Responsibility, labels: dict[str, str]) -> ResolvedRoute:
    """Who Alertmanager tells at each level of this alarm."""
    with tempfile.TemporaryDirectory(prefix="urbansense-routes-") as tmp:
        path = Path(tmp) / "alertmanager.yml"
        path.write_text(render(resp))
        levels = []
        top = 3 if resp.escalates(labels["severity"]) else 1
        for level in range(1, top + 1):
            pairs = [f"{k}={v}" for k, v in {**labels, "level": str(level)}.items()]
            out = _run(["config", "routes", "test", f"--config.file={path}", *pairs])
            receivers = [r.strip() for line in out.splitlines() for r in line.split(",") if r.strip()]
            if level > 1 and receivers == levels[-1].receivers:
                break  # no further level for this district
            levels.append(Level(level, receivers, None))
    # Each level but the last has its holder's time to acknowledge.
    timed = []
    for i, lv in enumerate(levels):
        last = i == len(levels) - 1
        holder = resp.institutions.get(lv.receivers[0]) if lv.receivers else None
        timed.append(Level(lv.level, lv.receivers, None if last or holder is None else holder.ack_within))
    return ResolvedRoute(labels, timed)
