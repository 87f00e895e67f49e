"""What a question is about: a time window and a place (districts, zones), turned into
InfluxQL WHERE clauses."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ops.client import quote_ident, quote_string

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class ScopeError(ValueError):
    """A time or place the user gave cannot be understood; the message is one line."""


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_duration_ms(text: str) -> int:
    """`90s`, `30m`, `24h`, `7d`, `2w` in milliseconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ScopeError(f"bad duration {text!r}: use a number and s, m, h, d or w, e.g. 24h")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def parse_time_ms(text: str, now: int) -> int:
    """A point in time: `now`, a duration back from now (`24h`), or an ISO 8601 / RFC 3339
    time (`2026-11-21T08:00:00Z`; a time without a zone is UTC)."""
    text = text.strip()
    if text == "now":
        return now
    if _DURATION.match(text):
        return now - parse_duration_ms(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ScopeError(
            f"bad time {text!r}: use a duration back from now (24h) or an ISO time (2026-11-21T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Window:
    """A half-open time window [start, end) in milliseconds since the epoch."""

    start_ms: int
    end_ms: int

    @classmethod
    def parse(cls, since: str, until: str | None = None, now: int | None = None) -> Window:
        now = now_ms() if now is None else now
        end = parse_time_ms(until, now) if until else now
        start = parse_time_ms(since, end if _DURATION.match(since.strip()) else now)
        if start >= end:
            raise ScopeError(f"the window is empty: --since {since} is not before --until {until or 'now'}")
        return cls(start, end)

    @property
    def hours(self) -> float:
        return (self.end_ms - self.start_ms) / 3_600_000

    def where(self) -> str:
        return f"time >= {self.start_ms}ms AND time < {self.end_ms}ms"


@dataclass(frozen=True)
class Place:
    """Districts and zones to keep (empty = all)."""

    districts: tuple[str, ...] = field(default_factory=tuple)
    zones: tuple[str, ...] = field(default_factory=tuple)

    def where(self) -> str:
        """Tag conditions, or an empty string; starts with ` AND ` when not empty."""
        parts = []
        for tag, values in (("district", self.districts), ("zone", self.zones)):
            if values:
                parts.append(
                    "(" + " OR ".join(f"{quote_ident(tag)} = {quote_string(v)}" for v in values) + ")"
                )
        return "".join(f" AND {p}" for p in parts)


def iso(ms: int | float | None) -> str | None:
    """Milliseconds since the epoch as an ISO 8601 UTC time (seconds precision)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
