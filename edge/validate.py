"""Validation: a raw MQTT message in, a typed record or a reason for the dead-letter table out.

First `protocols.decoder.decode` (the checks and their order are the protocol's, so the
edge reports the same reason as every other implementation, and the golden vectors hold
it to that), with the arrival time as the receiver clock: an `age_ms` reading gets its
timestamp here, once. Then the receiver-side check the decoder cannot make, a kind other
than the one the registry knows for the node (`kind_mismatch`). Last, the typed records
of `edge.models`, whose refusal (which would mean decoder and catalog disagree) is a
rejection too, never a crash.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from pydantic import ValidationError

from edge import models
from protocols.decoder import decode
from protocols.errors import (BAD_TYPE, KIND_MISMATCH, OUT_OF_RANGE, UNKNOWN_EVENT,
                              UNKNOWN_FIELD, MISSING_FIELD, ProtocolError)
from protocols.topics import ACK, EVENT, STATUS, TELEMETRY


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


@dataclass(frozen=True)
class Accepted:
    channel: str
    message: dict                 # the decoder's normalized form (SPEC.md section 8.2)
    records: list                 # typed records: readings, or one event/status/ack


Outcome = Union[Accepted, Rejected]

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

    def check(self, topic: str, payload: bytes, arrival_ms: int) -> Outcome:
        try:
            message = decode(topic, payload, arrival_ms)
        except ProtocolError as err:
            return Rejected(err.reason, err.detail)
        except (RecursionError, MemoryError, ValueError, TypeError) as err:
            return Rejected(DECODER_ERROR, type(err).__name__)
        known = self.known_kind(message["node"])
        if known is not None and known != message["kind"]:
            return Rejected(KIND_MISMATCH, f"node {message['node']} is a {known} node, "
                                           f"not {message['kind']}")
        channel = message["channel"]
        try:
            if channel == TELEMETRY:
                records = models.readings_of(message, arrival_ms)
            elif channel == EVENT:
                records = [models.event_of(message, arrival_ms)]
            elif channel == STATUS:
                records = [models.status_of(message, arrival_ms)]
            elif channel == ACK:
                records = [models.ack_of(message, arrival_ms)]
            else:   # the decoder refuses every other channel already
                return Rejected("bad_topic", f"channel {channel}")
        except ValidationError as err:
            return _reason_of(err)
        return Accepted(channel, message, records)
