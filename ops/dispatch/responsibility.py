"""Who answers for which alarm: the responsibility file, validated before anything runs.

A TOML (or YAML) file maps districts, zones, kinds and events to institutions, with each
institution's contacts and how long it has to acknowledge a critical alarm before it goes
to the next level (the district's duty officer, then the city's). Every key is checked
(pydantic, `extra="forbid"`): an error names the key (`rule[2].institution: no
institution 'xuhui-gas' (known: ...)`), and a file without `[default]` is refused, so no
alarm can fall through to nobody. Alertmanager does the routing; `amconfig.py` turns this
model into its configuration.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from protocols import catalog
from protocols.names import SLUG_PATTERN

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
# Alertmanager's duration syntax (a subset: one or more number+unit parts).
Duration = Annotated[str, StringConstraints(pattern=r"^([0-9]+(ms|s|m|h|d|w|y))+$")]
Kind = Literal[catalog.KINDS]  # type: ignore[valid-type]
Severity = Literal["info", "warning", "critical"]
Event = Literal[tuple(catalog.EVENTS)]  # type: ignore[valid-type]

_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """Seconds of an Alertmanager duration ("1h30m")."""
    return sum(float(n) * _UNITS_S[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", duration))


class ResponsibilityError(ValueError):
    """A responsibility file that cannot be used; one line per bad key in `problems`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertmanagerSection(_Strict):
    # Where the alarm desk and the escalation step reach Alertmanager's API.
    url: str = "http://127.0.0.1:9093"

    @model_validator(mode="after")
    def _http(self):
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


class Notify(_Strict):
    """Alertmanager's grouping and timing (route `group_by`, `group_wait`, ...)."""

    # Alarms of one zone and event go out together: a flood is one message, not hundreds.
    group_by: list[str] = ["district", "zone", "event", "level"]
    group_wait: Duration = "5s"
    group_interval: Duration = "1m"
    repeat_interval: Duration = "4h"


class Smtp(_Strict):
    smarthost: str = Field(pattern=r"^[^:\s]+:[0-9]{1,5}$")
    sender: str = Field(alias="from")
    require_tls: bool = True
    auth_username: str | None = None
    auth_password_file: str | None = None  # a file, so the secret stays out of the config
    hello: str = "localhost"


class Institution(_Strict):
    name: str = Field(min_length=1)
    email: list[str] = Field(default_factory=list)
    webhook: list[str] = Field(default_factory=list)
    phone: str = ""  # for people reading the desk; Alertmanager has no use for it
    # A critical alarm not acknowledged within this goes to the next level.
    ack_within: Duration = "10m"

    @model_validator(mode="after")
    def _contact(self):
        if not self.email and not self.webhook:
            raise ValueError("an institution needs `email` or `webhook` to be told anything")
        for url in self.webhook:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook {url!r} must start with http:// or https://")
        for address in self.email:
            if "@" not in address:
                raise ValueError(f"email {address!r} is not an address")
        return self


class Rule(_Strict):
    """Alarms matching every key given go to `institution` (first matching rule wins)."""

    district: Slug | None = None
    zones: list[Slug] = Field(default_factory=list)
    kinds: list[Kind] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    severities: list[Severity] = Field(default_factory=list)
    institution: Slug


class Default(_Strict):
    institution: Slug


class Escalation(_Strict):
    # Which alarms escalate when nobody acknowledges them.
    severities: list[Severity] = ["critical"]
    # Level 2: the district's duty officer (an institution), by district.
    districts: dict[Slug, Slug] = Field(default_factory=dict)
    # Level 3 (level 2 where a district has no duty officer): the city's.
    city: Slug


class Inhibit(_Strict):
    """While an alarm of `when` is open on a node, alarms of `mute` on the same node are
    not sent (Alertmanager's inhibition)."""

    when: list[Event] = Field(min_length=1)
    mute: list[Event] = Field(min_length=1)
    same: list[Literal["node", "zone", "district"]] = ["node"]


class Responsibility(_Strict):
    alertmanager: AlertmanagerSection = AlertmanagerSection()
    notify: Notify = Notify()
    smtp: Smtp | None = None
    institutions: dict[Slug, Institution] = Field(min_length=1)
    rule: list[Rule] = Field(default_factory=list)
    default: Default
    escalation: Escalation | None = None
    inhibit: list[Inhibit] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self):
        known = ", ".join(sorted(self.institutions))

        def check(where: str, name: str) -> None:
            if name not in self.institutions:
                raise ValueError(f"{where}: no institution {name!r} (known: {known})")

        for i, rule in enumerate(self.rule):
            check(f"rule[{i}].institution", rule.institution)
        check("default.institution", self.default.institution)
        if self.escalation is not None:
            check("escalation.city", self.escalation.city)
            for district, duty in self.escalation.districts.items():
                check(f"escalation.districts.{district}", duty)
        if self.smtp is None:
            mailing = sorted(k for k, v in self.institutions.items() if v.email)
            if mailing:
                raise ValueError(f"smtp: missing (required): institutions {', '.join(mailing)} have email")
        return self

    # -- the ladder of an alarm
    def level_institution(self, level: int, district: str, first: str) -> str | None:
        """Who is told at `level` of an alarm of `district` that `first` was told of at
        level 1; None past the last level."""
        if level == 1:
            return first
        if self.escalation is None:
            return None
        duty = self.escalation.districts.get(district)
        ladder = [first] + ([duty] if duty else []) + [self.escalation.city]
        # A district without a duty officer goes straight to the city.
        return ladder[level - 1] if level <= len(ladder) else None

    def escalates(self, severity: str) -> bool:
        return self.escalation is not None and severity in self.escalation.severities


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def problems_of(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        where = _where(tuple(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "missing (required)"
            if where == "default":
                msg += ": a config without a default route is refused"
        elif e["type"] == "literal_error":
            msg = f"unknown value {e['input']!r}; {msg}"
        # A cross-reference error names its own key ("rule[2].institution: ...").
        lines.append(msg if not where and ":" in msg else f"{where or '(top level)'}: {msg}")
    return lines


def parse(data: object, source: str = "responsibility") -> Responsibility:
    if not isinstance(data, dict):
        raise ResponsibilityError(source, ["a responsibility file is a table of keys"])
    try:
        return Responsibility.model_validate(data)
    except ValidationError as err:
        raise ResponsibilityError(source, problems_of(err)) from None


def load(path: str | Path) -> Responsibility:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ResponsibilityError(str(path), [f"cannot read: {err.strerror or err}"]) from None
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise ResponsibilityError(
            str(path), [f"not valid {path.suffix[1:].upper() or 'TOML'}: {err}"]
        ) from None
    return parse(data, str(path))
