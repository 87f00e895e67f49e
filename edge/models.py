"""Typed records that flow between the edge's stages, built from the protocol catalog.

`protocols.decoder` checks a message in the order SPEC.md fixes and returns a plain dict;
these pydantic models, generated with `pydantic.create_model` from `protocols.catalog`,
turn that dict into a typed, immutable record: per kind, every catalog field with its
type (strict bool, or a finite float inside the catalog range) and every event the kind
may raise. A catalog addition (a new kind, field or event) is picked up with no code
change here. A dict the models refuse is quarantined like any protocol violation.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, create_model

from protocols import catalog
from protocols.decoder import COUNTER_MAX
from protocols.names import SLUG_PATTERN

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
Counter = Annotated[int, Field(ge=0, le=COUNTER_MAX, strict=True)]
TimeSource = Literal["node", "edge"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)


def _field_type(spec: tuple):
    kind, unit, low, high = spec
    if kind == catalog.BOOL:
        return StrictBool | None
    return (
        Annotated[float, Field(ge=low, le=high, allow_inf_nan=False, json_schema_extra={"unit": unit})] | None
    )


def _class_name(kind: str, suffix: str) -> str:
    return "".join(p.capitalize() for p in kind.replace("-", "_").split("_")) + suffix


class FieldsBase(BaseModel):
    model_config = _FROZEN

    def values(self) -> dict:
        """The fields the node sent (absent ones are not None-filled)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class Record(BaseModel):
    model_config = _FROZEN
    district: Slug
    zone: Slug
    node: Slug
    arrival_ms: int


class ReadingBase(Record):
    boot: Counter
    seq: Counter
    ts: int
    time_source: TimeSource
    # Set by the commit loop when the timestamp was moved off another reading's (a
    # collision, protocols/SPEC.md 3.2).
    moved: bool = False

    @property
    def time_estimated(self) -> bool:
        """The node did not measure this time itself: it sent age_ms, or it was moved."""
        return self.time_source == "edge" or self.moved


class EventBase(ReadingBase):
    severity: Literal[catalog.SEVERITIES]  # type: ignore[valid-type]
    state: StrictBool
    value: float | None = Field(None, allow_inf_nan=False)


class Status(Record):
    kind: str
    boot: Counter
    seq: Counter
    ts: int | None
    time_source: TimeSource | None
    state: Literal["online", "offline"]
    fw: str | None = Field(None, max_length=64)
    interval_s: float | None = None
    reset: str | None = Field(None, max_length=64)
    first_seq: Counter | None = None
    dropped: Counter | None = None


class Ack(Record):
    kind: str
    boot: Counter
    seq: Counter
    id: Slug
    ok: StrictBool
    error: str | None = Field(None, max_length=200)
    result: dict | None = None


def _build():
    fields, readings, events = {}, {}, {}
    for kind in catalog.KINDS:
        spec = catalog.fields_of(kind)
        model = create_model(
            _class_name(kind, "Fields"),
            __base__=FieldsBase,
            **{name: (_field_type(s), None) for name, s in spec.items()},
        )
        fields[kind] = model
        readings[kind] = create_model(
            _class_name(kind, "Reading"),
            __base__=ReadingBase,
            kind=(Literal[kind], kind),
            fields=(model, ...),
        )
        names = tuple(catalog.events_of(kind))
        events[kind] = create_model(
            _class_name(kind, "Event"),
            __base__=EventBase,
            kind=(Literal[kind], kind),
            event=(Literal[names], ...),  # type: ignore[valid-type]
            fields=(model, model()),
        )
    return fields, readings, events


FIELDS, READINGS, EVENTS = _build()


def readings_of(message: dict, arrival_ms: int) -> list[ReadingBase]:
    """Typed readings of a decoded telemetry message."""
    model = READINGS[message["kind"]]
    base = {
        "district": message["district"],
        "zone": message["zone"],
        "node": message["node"],
        "kind": message["kind"],
        "arrival_ms": arrival_ms,
    }
    return [model.model_validate({**base, **r}) for r in message["readings"]]


def event_of(message: dict, arrival_ms: int) -> EventBase:
    data = {k: v for k, v in message.items() if k not in ("v", "channel")}
    return EVENTS[message["kind"]].model_validate({**data, "arrival_ms": arrival_ms})


def status_of(message: dict, arrival_ms: int) -> Status:
    data = {k: v for k, v in message.items() if k not in ("v", "channel")}
    return Status.model_validate({**data, "arrival_ms": arrival_ms})


def ack_of(message: dict, arrival_ms: int) -> Ack:
    data = {k: v for k, v in message.items() if k not in ("v", "channel")}
    return Ack.model_validate({**data, "arrival_ms": arrival_ms})
