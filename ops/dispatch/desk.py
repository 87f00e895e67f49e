"""The alarm desk: open alarms as Alertmanager holds them, who was told, who took them.

An alarm is one node's event (`node`, `event` labels). Alertmanager holds its alert at
level 1 (posted by the edge) and, once escalated, copies at levels 2 and 3 (escalate.py);
each alert lists the receivers Alertmanager routes it to, which are the institutions
told. Acknowledging is an Alertmanager silence on the alarm's node and event, with its
author and comment: Alertmanager stops notifying for it (every level), and the escalation
step sees the alarm as taken. The silence lasts until the alarm clears (the escalation
step then expires it; `--for` bounds it in any case).

Alertmanager's v2 API is a few JSON calls, made here with the standard library (no
maintained Python client exists for it).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# The comment of an acknowledgement ends with this tag, so the escalation step knows the
# silences it may expire once their alarm has cleared.
ACK_TAG = "[urbansense ack]"


class DeskError(RuntimeError):
    """Alertmanager could not be reached or refused a call; the message is one line."""


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AlertmanagerAPI:
    url: str
    timeout: float = 10.0

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url.rstrip("/") + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                text = resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace").strip()
            raise DeskError(
                f"Alertmanager at {self.url} refused {method} {path}: {err.code} {detail}"
            ) from None
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise DeskError(f"Alertmanager at {self.url} cannot be reached: {reason}") from None
        return json.loads(text) if text.strip() else None

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts, silenced and inhibited ones included (resolved ones are gone)."""
        return self._call("GET", "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true")

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        self._call("POST", "/api/v2/alerts", alerts)

    def silences(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/v2/silences")

    def silence(self, matchers: dict[str, str], author: str, comment: str, until: datetime) -> str:
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()
            ],
            "startsAt": iso(datetime.now(UTC)),
            "endsAt": iso(until),
            "createdBy": author,
            "comment": comment,
        }
        return self._call("POST", "/api/v2/silences", body)["silenceID"]

    def expire_silence(self, silence_id: str) -> None:
        self._call("DELETE", f"/api/v2/silence/{urllib.parse.quote(silence_id)}")


def identity(labels: dict[str, str]) -> tuple[str, str]:
    return labels.get("node", ""), labels.get("event", "")


@dataclass
class OpenAlarm:
    node: str
    event: str
    district: str
    zone: str
    kind: str
    severity: str
    starts_at: datetime
    level: int
    told: list[str]  # receivers (institutions) its alerts are routed to, in level order
    annotations: dict[str, str]
    acked_by: str | None = None
    ack_comment: str | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def age_s(self, now: datetime) -> float:
        return max(0.0, (now - self.starts_at).total_seconds())

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "node": self.node,
            "event": self.event,
            "district": self.district,
            "zone": self.zone,
            "kind": self.kind,
            "severity": self.severity,
            "raised_at": iso(self.starts_at),
            "age_s": round(self.age_s(now), 1),
            "level": self.level,
            "told": self.told,
            "acknowledged": self.acked_by is not None,
            "acked_by": self.acked_by,
            "ack_comment": self.ack_comment,
            "place": self.annotations.get("place", ""),
            "value": self.annotations.get("value", ""),
            "recent_data": self.annotations.get("recent_data", ""),
        }


def open_alarms(api: AlertmanagerAPI) -> list[OpenAlarm]:
    """The open alarms, oldest first, each with all its levels folded in."""
    silences = {s["id"]: s for s in api.silences()}
    by_alarm: dict[tuple[str, str], OpenAlarm] = {}
    for alert in sorted(api.alerts(), key=lambda a: int(a["labels"].get("level", "1") or 1)):
        labels = alert["labels"]
        if "node" not in labels or "event" not in labels:
            continue  # not an urbansense alarm (another sender of this Alertmanager)
        key = identity(labels)
        level = int(labels.get("level", "1") or 1)
        alarm = by_alarm.get(key)
        if alarm is None:
            alarm = by_alarm[key] = OpenAlarm(
                node=labels["node"],
                event=labels["event"],
                district=labels.get("district", ""),
                zone=labels.get("zone", ""),
                kind=labels.get("kind", ""),
                severity=labels.get("severity", ""),
                starts_at=parse_time(alert["startsAt"]),
                level=level,
                told=[],
                annotations=alert.get("annotations", {}),
            )
        alarm.level = max(alarm.level, level)
        alarm.alerts.append(alert)
        for receiver in alert.get("receivers", []):
            if receiver["name"] not in alarm.told:
                alarm.told.append(receiver["name"])
        for sid in alert.get("status", {}).get("silencedBy", []):
            s = silences.get(sid)
            if s is not None and alarm.acked_by is None:
                alarm.acked_by = s.get("createdBy")
                alarm.ack_comment = s.get("comment", "").removesuffix(ACK_TAG).strip()
    return sorted(by_alarm.values(), key=lambda a: a.starts_at)


def find(alarms: list[OpenAlarm], node: str, event: str | None) -> list[OpenAlarm]:
    return [a for a in alarms if a.node == node and (event is None or a.event == event)]


def acknowledge(
    api: AlertmanagerAPI, node: str, event: str | None, author: str, comment: str, hold: timedelta
) -> list[tuple[OpenAlarm, str]]:
    """Silence the open alarm(s) of `node` (and `event`); returns (alarm, silence id).
    An unknown node or event is a DeskError listing the open alarms."""
    alarms = open_alarms(api)
    chosen = find(alarms, node, event)
    if not chosen:
        known = ", ".join(f"{a.node} {a.event}" for a in alarms) or "none"
        what = f"{node} {event}" if event else node
        raise DeskError(f"no open alarm {what} (open: {known})")
    until = datetime.now(UTC) + hold
    out = []
    for alarm in chosen:
        sid = api.silence(
            {"node": alarm.node, "event": alarm.event}, author, f"{comment} {ACK_TAG}".strip(), until
        )
        out.append((alarm, sid))
    return out
