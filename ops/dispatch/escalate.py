"""The escalation step: a critical alarm nobody acknowledged in time goes to the next level.

Alertmanager routes, groups, repeats and silences, but it has no notion of "not
acknowledged within N minutes, tell someone else": its repeat_interval only tells the
same receiver again. No other packaged component does it either (that is what paging
services sell). So this small step is hand-written, and it does only the part Alertmanager
lacks; the routing of the escalated alarm stays Alertmanager's:

- it reads the open alarms from Alertmanager (`desk.open_alarms`);
- for an alarm whose severity escalates (`[escalation] severities`), not acknowledged
  (no silence), older than the level-1 institution's `ack_within`, it posts a copy of the
  level-1 alert with `level="2"`; older than that plus the level-2 duty officer's
  `ack_within`, one with `level="3"`. Alertmanager routes `level` to the district's and
  the city's duty officers (amconfig.py);
- it posts the copies again on every pass while their alarm is open (Alertmanager
  forgets what is not posted again), with the level-1 alert's endsAt, and ends them
  (endsAt = now) once the level-1 alert is gone: the duty officers get the resolution;
- it expires acknowledgement silences whose alarm has cleared, so a new alarm of the
  same node and event is not born silenced.

It keeps no state: everything it needs is in Alertmanager (the copies and their ages), so
it can be restarted, or run twice, at any time. A level once reached is kept until the
alarm clears, also if the alarm is acknowledged later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from ops.dispatch.desk import ACK_TAG, AlertmanagerAPI, OpenAlarm, iso, open_alarms
from ops.dispatch.responsibility import Responsibility, seconds

log = logging.getLogger("urbansense.ops.escalate")


@dataclass(frozen=True)
class Step:
    """What one pass did to one alarm."""

    node: str
    event: str
    level: int
    action: str  # "escalated", "ended", "ack expired"
    to: str


def due_level(resp: Responsibility, alarm: OpenAlarm, first: str, now: datetime) -> int:
    """The level an alarm should be at by now (1 if it does not escalate)."""
    if not resp.escalates(alarm.severity) or alarm.acked_by is not None:
        return 1
    waited = alarm.age_s(now)
    level, budget = 1, 0.0
    while True:
        holder = resp.level_institution(level, alarm.district, first)
        nxt = resp.level_institution(level + 1, alarm.district, first)
        if holder is None or nxt is None:
            return level
        budget += seconds(resp.institutions[holder].ack_within)
        if waited < budget:
            return level
        level += 1


def _copy(original: dict, level: int, ends_at: str) -> dict:
    return {
        "labels": {**original["labels"], "level": str(level)},
        "annotations": {**original.get("annotations", {}), "escalated": f"level {level}"},
        "startsAt": original["startsAt"],
        "endsAt": ends_at,
        **({"generatorURL": original["generatorURL"]} if original.get("generatorURL") else {}),
    }


def run_once(api: AlertmanagerAPI, resp: Responsibility, now: datetime | None = None) -> list[Step]:
    """One pass over Alertmanager's open alarms; returns what changed."""
    now = now or datetime.now(UTC)
    steps: list[Step] = []
    posts: list[dict] = []
    for alarm in open_alarms(api):
        by_level = {int(a["labels"].get("level", "1") or 1): a for a in alarm.alerts}
        original = by_level.get(1)
        if original is None:
            # The alarm cleared (its level-1 alert is gone): end the copies left over.
            for level, copy in sorted(by_level.items()):
                posts.append(_copy(copy, level, iso(now)))
                steps.append(Step(alarm.node, alarm.event, level, "ended", _receivers(copy)))
            continue
        first = _receivers(original) or resp.default.institution
        target = max(due_level(resp, alarm, first, now), max(by_level))
        for level in range(2, target + 1):
            posts.append(_copy(original, level, original["endsAt"]))
            if level not in by_level:
                to = resp.level_institution(level, alarm.district, first) or ""
                steps.append(Step(alarm.node, alarm.event, level, "escalated", to))
    if posts:
        api.post_alerts(posts)
    steps += _expire_acks(api, now)
    for s in steps:
        log.info("%s %s: level %d %s (%s)", s.node, s.event, s.level, s.action, s.to)
    return steps


def _receivers(alert: dict) -> str:
    return ",".join(r["name"] for r in alert.get("receivers", []))


def _expire_acks(api: AlertmanagerAPI, now: datetime) -> list[Step]:
    """Acknowledgements whose alarm is no longer open."""
    open_keys = {(a.node, a.event) for a in open_alarms(api)}
    steps = []
    for s in api.silences():
        if s.get("status", {}).get("state") != "active" or not s.get("comment", "").endswith(ACK_TAG):
            continue
        m = {x["name"]: x["value"] for x in s.get("matchers", [])}
        key = (m.get("node", ""), m.get("event", ""))
        if key not in open_keys:
            api.expire_silence(s["id"])
            steps.append(Step(key[0], key[1], 0, "ack expired", s.get("createdBy", "")))
    return steps
