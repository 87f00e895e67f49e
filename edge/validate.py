"""Validation: a raw MQTT message in, one typed record per channel or a reason for the
dead-letter table out.

First the protocol decoder: `edge.fastdecode`, which gives exactly the result of
`protocols.decoder.decode` (the checks and their order are the protocol's, so the edge
reports the same reason as every other implementation, and the golden vectors hold it to
that) and leaves every refusal to it, with the arrival time as the receiver clock: an `age_ms` reading gets its
timestamp here, once. Then the receiver-side check the decoder cannot make, a kind other
than the one the registry knows for the node (`kind_mismatch`). Last, the typed record of
the message's channel (`ACCEPTED`), built from the models of `edge.models`, whose refusal
(which would mean decoder and catalog disagree) is a rejection too, never a crash; a
telemetry or event message the fast decoder accepted, field for field as the reference
would, is not validated a second time. What flows on is that record only: the decoder's
dict stays here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from pydantic import ValidationError

from edge import models
from edge.fastdecode import decode_marked
from protocols.errors import (
    BAD_TOPIC,
    BAD_TYPE,
    KIND_MISMATCH,
    MISSING_FIELD,
    OUT_OF_RANGE,
    UNKNOWN_EVENT,
    UNKNOWN_FIELD,
    ProtocolError,
)
from protocols.topics import ACK, EVENT, STATUS, TELEMETRY, alarm_topic


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


@dataclass(frozen=True)
class TelemetryAccepted:
    """Readings of one telemetry message (one, or a node's batch)."""

    channel: ClassVar[str] = TELEMETRY
    readings: list[models.ReadingBase]

    @classmethod
    def of(cls, message: dict, arrival_ms: int, checked: bool = False) -> TelemetryAccepted:
        if checked:
            return cls(models.checked_readings_of(message, arrival_ms))
        return cls(models.readings_of(message, arrival_ms))

    @property
    def identified(self) -> Sequence[models.ReadingBase]:
        """The records the identity index deduplicates."""
        return self.readings

    @property
    def sender(self) -> tuple[str, str]:
        """(node, kind) of the node that sent the message."""
        return self.readings[0].node, self.readings[0].kind


@dataclass(frozen=True)
class EventAccepted:
    """An event, with the topic and payload that republish it on alarms/v1/..."""

    channel: ClassVar[str] = EVENT
    event: models.EventBase
    alarm_topic: str
    alarm: str  # the decoder's normalized message as compact JSON

    @classmethod
    def of(cls, message: dict, arrival_ms: int, checked: bool = False) -> EventAccepted:
        return cls(
            (models.checked_event_of if checked else models.event_of)(message, arrival_ms),
            alarm_topic(message["district"], message["zone"], message["node"], message["event"]),
            json.dumps(message, separators=(",", ":")),
        )

    @property
    def identified(self) -> Sequence[models.EventBase]:
        return (self.event,)

    @property
    def sender(self) -> tuple[str, str]:
        return self.event.node, self.event.kind


@dataclass(frozen=True)
class StatusAccepted:
    channel: ClassVar[str] = STATUS
    status: models.Status

    @classmethod
    def of(cls, message: dict, arrival_ms: int, checked: bool = False) -> StatusAccepted:
        return cls(models.status_of(message, arrival_ms))

    identified: ClassVar[Sequence] = ()

    @property
    def sender(self) -> tuple[str, str]:
        return self.status.node, self.status.kind


@dataclass(frozen=True)
class AckAccepted:
    channel: ClassVar[str] = ACK
    ack: models.Ack

    @classmethod
    def of(cls, message: dict, arrival_ms: int, checked: bool = False) -> AckAccepted:
        return cls(models.ack_of(message, arrival_ms))

    identified: ClassVar[Sequence] = ()

    @property
    def sender(self) -> tuple[str, str]:
        return self.ack.node, self.ack.kind


Accepted = TelemetryAccepted | EventAccepted | StatusAccepted | AckAccepted
Outcome = Accepted | Rejected

# The record type of each channel a node publishes on.
ACCEPTED: dict[str, type[Accepted]] = {
    cls.channel: cls for cls in (TelemetryAccepted, EventAccepted, StatusAccepted, AckAccepted)
}

# The decoder failed in a way the protocol does not name (a bug, or an input the limits
# missed): the message is quarantined rather than crashing the loop and coming back
# forever as an unacknowledged redelivery.
DECODER_ERROR = "decoder_error"

_PYDANTIC_REASONS = {
    "extra_forbidden": UNKNOWN_FIELD,
    "missing": MISSING_FIELD,
    "literal_error": UNKNOWN_EVENT,
    "greater_than_equal": OUT_OF_RANGE,
    "less_than_equal": OUT_OF_RANGE,
    "finite_number": OUT_OF_RANGE,
}


def _reason_of(err: ValidationError) -> Rejected:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return Rejected(_PYDANTIC_REASONS.get(first["type"], BAD_TYPE), f"{loc}: {first['msg']}")


class Validator:
    def __init__(self, known_kind: Callable[[str], str | None]) -> None:
        self.known_kind = known_kind

    def check(self, topic: str, payload: bytes, arrival_ms: int, decoded: dict | None = None) -> Outcome:
        """The message's outcome; `decoded`: what `fastdecode.fast_only` gave for it at the
        same arrival time (in the receiving process), so it is not decoded again."""
        try:
            message, checked = (
                (decoded, True) if decoded is not None else decode_marked(topic, payload, arrival_ms)
            )
        except ProtocolError as err:
            return Rejected(err.reason, err.detail)
        # ArithmeticError: the reference decoder's float() of an integer of hundreds of
        # digits in a field raises OverflowError.
        except (RecursionError, MemoryError, ValueError, TypeError, ArithmeticError) as err:
            return Rejected(DECODER_ERROR, type(err).__name__)
        known = self.known_kind(message["node"])
        if known is not None and known != message["kind"]:
            return Rejected(KIND_MISMATCH, f"node {message['node']} is a {known} node, not {message['kind']}")
        record = ACCEPTED.get(message["channel"])
        if record is None:  # the decoder refuses every other channel already
            return Rejected(BAD_TOPIC, f"channel {message['channel']}")
        try:
            return record.of(message, arrival_ms, checked)
        except ValidationError as err:
            return _reason_of(err)
