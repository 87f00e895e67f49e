"""HIL scenario files: the boards of a rig, what happens to them over time, and what must
be observed. A scenario is YAML (`.yaml`/`.yml`) or TOML (`.toml`); both load into the same
pydantic model, so a bad file fails before anything starts, with an error naming the key.

Shape (YAML):

    name: leak-sleeping-node
    description: ...
    site: {district: hil, zone: rig}
    boards:
      - {node: l-0001, kind: leak, schedule: duty-cycled, interval_s: 30}
    timeline:
      - {at: 3, id: leak-starts, do: stimulus, node: l-0001, set: {wet: true}}
      - {at: 10, do: broker-down, for_s: 30}
    expect:
      - {type: alarm, node: l-0001, event: leak, after: leak-starts, within_ms: 5000}
    settle_s: 5

`at` is seconds after every board is online. An expectation with `after` measures from the
moment that step ran; the others are checked once the timeline has played out.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocols import catalog, codec
from protocols.names import NODE_HEALTH, SLUG_PATTERN
from protocols.topics import is_slug

Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
Kind = Literal[catalog.KINDS]  # type: ignore[valid-type]
Value = bool | float


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Site(_Strict):
    district: Slug = "hil"
    zone: Slug = "rig"


class BoardSpec(_Strict):
    """One board on the rig and the node config it is provisioned with."""

    node: Slug
    kind: Kind
    schedule: Literal["always-on", "duty-cycled"] | None = None
    interval_s: float = Field(default=5, ge=1, le=86400)
    thresholds: dict[str, float] = Field(default_factory=dict)
    # Further node config keys (see firmware/README.md), passed to the node as they are.
    config: dict[str, Any] = Field(default_factory=dict)


class _Step(_Strict):
    at: float = Field(ge=0, description="seconds after every board is online")
    id: Slug | None = None


class StimulusStep(_Step):
    """Inject sensor values (`set`) and/or hand sensors back to the simulated world (`clear`)."""

    do: Literal["stimulus"]
    node: Slug
    set: dict[str, Value] = Field(default_factory=dict)
    clear: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> StimulusStep:
        if not self.set and not self.clear:
            raise ValueError("a stimulus needs `set` or `clear`")
        return self


class OutageStep(_Step):
    """A server goes away for `for_s` seconds: the broker (stopped, or crashed: killed -9,
    losing what it acknowledged since its last save), InfluxDB, or the edge (killed -9)."""

    do: Literal["broker-down", "broker-crash", "influxdb-down", "edge-kill"]
    for_s: float = Field(ge=0)


class NetworkCutStep(_Step):
    do: Literal["network-cut"]
    node: Slug
    for_s: float = Field(ge=0)


class PowerLossStep(_Step):
    """Reset the board without warning, whatever it is doing (mid-queue, mid-publish)."""

    do: Literal["power-loss"]
    node: Slug


class CommandStep(_Step):
    """Publish a command on the node's `cmd` topic (SPEC section 7)."""

    do: Literal["command"]
    node: Slug
    cmd: Literal["set", "get", "ping", "sample", "reboot"]
    cmd_id: Slug | None = None
    args: dict[str, Any] = Field(default_factory=dict)


Step = Annotated[
    StimulusStep | OutageStep | NetworkCutStep | PowerLossStep | CommandStep, Field(discriminator="do")
]


class _Expect(_Strict):
    name: str | None = None


class AlarmExpect(_Expect):
    """An event republished on alarms/v1/... Either `within_ms` of step `after`, or (with
    `count`) exactly that many matching alarms over the run (or between steps `since`
    and `until`)."""

    type: Literal["alarm"]
    node: Slug
    event: Slug
    state: bool = True
    after: Slug | None = None
    within_ms: float | None = Field(default=None, gt=0)
    count: int | None = Field(default=None, ge=0)
    since: Slug | None = Field(default=None, description="count only alarms after this step")
    until: Slug | None = Field(default=None, description="... and before this one")

    @model_validator(mode="after")
    def _timed_or_counted(self) -> AlarmExpect:
        if (self.after is None) != (self.within_ms is None):
            raise ValueError("`after` and `within_ms` go together")
        if (self.after is None) == (self.count is None):
            raise ValueError("give either `after` with `within_ms`, or `count`")
        if (self.since is not None or self.until is not None) and self.count is None:
            raise ValueError("`since` and `until` go with `count`")
        return self


class InfluxExpect(_Expect):
    """An event point visible in InfluxDB within `within_ms` of step `after`."""

    type: Literal["influx"]
    node: Slug
    event: Slug
    state: bool = True
    after: Slug
    within_ms: float = Field(gt=0)
    database: Literal["district", "city"] = "district"


class PointsExpect(_Expect):
    """At the end: how many points of `measurement` (of `node`, or of all nodes) InfluxDB holds.
    `readings` instead of a number means: exactly one point per distinct reading the node
    published (nothing lost, nothing doubled)."""

    type: Literal["points"]
    measurement: Slug | Literal[NODE_HEALTH]  # type: ignore[valid-type]
    node: Slug | None = None
    database: Literal["district", "city"] = "district"
    at_least: int | None = Field(default=None, ge=0)
    exactly: int | Literal["readings"] | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> PointsExpect:
        if (self.at_least is None) == (self.exactly is None):
            raise ValueError("give exactly one of `at_least` and `exactly`")
        if self.exactly == "readings" and self.node is None:
            raise ValueError("`exactly: readings` needs a `node`")
        return self


class SequenceExpect(_Expect):
    """The node's readings and events as the broker saw them: no seq gaps within a boot, and
    (with `in_order`) telemetry readings arriving in increasing (boot, seq) order."""

    type: Literal["sequence"]
    node: Slug
    in_order: bool = False
    min_readings: int = Field(default=1, ge=0)


class AckExpect(_Expect):
    """The node acks command step `after` within `within_ms`; `result` must be contained in
    the ack's result."""

    type: Literal["ack"]
    after: Slug
    within_ms: float = Field(gt=0)
    ok: bool = True
    result: dict[str, Any] = Field(default_factory=dict)


class NotifiedExpect(_Expect):
    """Alertmanager told institution `receiver` of the node's event (with `state: false`,
    of its resolution) within `within_ms` of step `after`: the notification as the
    institution's webhook received it."""

    type: Literal["notified"]
    receiver: Slug
    node: Slug
    event: Slug
    state: bool = True
    after: Slug
    within_ms: float = Field(gt=0)


Expectation = Annotated[
    AlarmExpect | InfluxExpect | PointsExpect | SequenceExpect | AckExpect | NotifiedExpect,
    Field(discriminator="type"),
]


class Scenario(_Strict):
    name: Slug
    description: str = ""
    site: Site = Field(default_factory=Site)
    boards: list[BoardSpec] = Field(min_length=1)
    timeline: list[Step] = Field(default_factory=list)
    expect: list[Expectation] = Field(min_length=1)
    settle_s: float = Field(default=5, ge=0, description="run on this long after the last step")
    # Who answers for which alarm, as a responsibility file (ops/README.md) without the
    # institutions' contacts: the rig tells each through a webhook of its own. Without
    # it, every `notified` receiver is an institution and the first one takes all alarms.
    responsibility: dict[str, Any] | None = None
    online_timeout_s: float = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        nodes = {b.node: b for b in self.boards}
        if len(nodes) != len(self.boards):
            raise ValueError("two boards share a node id")
        steps: dict[str, Any] = {}
        for i, step in enumerate(self.timeline):
            where = f"timeline.{i}"
            node = getattr(step, "node", None)
            if node is not None and node not in nodes:
                raise ValueError(f"{where}.node: no board {node!r}")
            if step.id is not None:
                if step.id in steps:
                    raise ValueError(f"{where}.id: {step.id!r} used twice")
                steps[step.id] = step
            if isinstance(step, StimulusStep):
                _check_stimulus(step, nodes[step.node].kind, where)
            if isinstance(step, CommandStep) and step.cmd_id is None and step.id is None:
                raise ValueError(f"{where}: a command needs `id` or `cmd_id`")
        for i, exp in enumerate(self.expect):
            where = f"expect.{i}"
            node = getattr(exp, "node", None)
            if node is not None and node not in nodes:
                raise ValueError(f"{where}.node: no board {node!r}")
            event = getattr(exp, "event", None)
            if event is not None and node is not None:
                allowed = catalog.events_of(nodes[node].kind)
                if event not in allowed:
                    raise ValueError(
                        f"{where}.event: {event!r} is not an event of a "
                        f"{nodes[node].kind} node ({', '.join(allowed)})"
                    )
            for key in ("since", "until"):
                ref = getattr(exp, key, None)
                if ref is not None and ref not in steps:
                    raise ValueError(f"{where}.{key}: no timeline step with id {ref!r}")
            if isinstance(exp, NotifiedExpect) and self.responsibility is not None:
                known = self.responsibility.get("institutions") or {}
                if exp.receiver not in known:
                    raise ValueError(
                        f"{where}.receiver: no institution {exp.receiver!r} in responsibility "
                        f"(known: {', '.join(sorted(known)) or 'none'})"
                    )
            after = getattr(exp, "after", None)
            if after is not None:
                if after not in steps:
                    raise ValueError(f"{where}.after: no timeline step with id {after!r}")
                if isinstance(exp, AckExpect) and not isinstance(steps[after], CommandStep):
                    raise ValueError(f"{where}.after: step {after!r} is not a command")
        return self

    def board(self, node: str) -> BoardSpec:
        return next(b for b in self.boards if b.node == node)

    def step(self, step_id: str) -> Any:
        return next(s for s in self.timeline if s.id == step_id)

    @property
    def length_s(self) -> float:
        """How long the timeline plays, outages included, plus the settle time."""
        end = 0.0
        for step in self.timeline:
            end = max(end, step.at + getattr(step, "for_s", 0.0))
        return end + self.settle_s


# Quantities a harness can force on a node, per kind (firmware/README.md, contract 3).
STIMULI = {
    "parking": ("mag_delta_ut", "distance_cm"),
    "air": ("pm1", "pm25", "pm10", "co2", "no2", "temperature_c", "humidity_pct"),
    "leak": ("wet", "conductance"),
    "manhole": ("tilt_deg", "cover_open", "water_level_cm", "ch4_lel", "h2s_ppm"),
}
COMMON_STIMULI = ("battery_v",)


def _check_stimulus(step: StimulusStep, kind: str, where: str) -> None:
    allowed = STIMULI[kind] + COMMON_STIMULI
    for key, names in (("set", list(step.set)), ("clear", step.clear)):
        for name in names:
            if name not in allowed:
                raise ValueError(
                    f"{where}.{key}: {name!r} is not a stimulus of a {kind} node ({', '.join(allowed)})"
                )


def command_id(step: CommandStep) -> str:
    return step.cmd_id or step.id or ""


def command_payload(step: CommandStep) -> bytes:
    payload = codec.encode_command(command_id(step), step.cmd, step.args or None)
    return payload if isinstance(payload, bytes) else payload.encode()


def _location(loc: tuple[Any, ...]) -> str:
    # pydantic puts the union member's tag in the path (timeline.0.stimulus.set); drop it
    # so the path is the one a user sees in the file.
    tags = {
        "stimulus",
        "broker-down",
        "broker-crash",
        "influxdb-down",
        "edge-kill",
        "network-cut",
        "power-loss",
        "command",
        "alarm",
        "influx",
        "points",
        "sequence",
        "ack",
        "notified",
    }
    parts = [str(p) for i, p in enumerate(loc) if not (i == 2 and p in tags)]
    return ".".join(parts)


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = _location(tuple(first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        key = first["ctx"]["discriminator"].strip("'")
        loc = f"{loc}.{key}" if loc else key
        if first["type"] == "union_tag_not_found":
            msg = "missing"
        else:
            msg = (
                f"unknown value {first['input'].get(key)!r}; expected one of {first['ctx']['expected_tags']}"
            )
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{loc}: {msg}{more}" if loc else f"{msg}{more}"


def parse(data: Any, source: str = "scenario") -> Scenario:
    """Validate already-loaded data; raise ScenarioError naming the source and the bad key."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping of keys, not {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(f"{source}: {_one_line(err)}") from None


def load(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise ScenarioError(f"{path}: cannot read: {err}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ScenarioError(f"{path}: a scenario file ends in .yaml, .yml or .toml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise ScenarioError(
            f"{path}: not valid {path.suffix[1:].upper()}: {str(err).splitlines()[0]}"
        ) from None
    return parse(data, str(path))


__all__ = [
    "Scenario",
    "ScenarioError",
    "BoardSpec",
    "StimulusStep",
    "OutageStep",
    "NetworkCutStep",
    "PowerLossStep",
    "CommandStep",
    "AlarmExpect",
    "InfluxExpect",
    "PointsExpect",
    "SequenceExpect",
    "AckExpect",
    "NotifiedExpect",
    "load",
    "parse",
    "is_slug",
]
