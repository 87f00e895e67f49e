"""What a question is about: a time window and a place (districts, zones), turned into
InfluxQL WHERE clauses; and the check that the database, districts and zones asked about
exist, so that a misspelt zone is an error listing the known ones, never an empty answer."""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ops.client import InfluxQLClient, quote_ident, quote_string

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


def _is_duration(text: str) -> bool:
    """`24h`, or `-24h`: a time back from another is often written with a sign."""
    return bool(_DURATION.match(text.strip().removeprefix("-")))


def parse_time_ms(text: str, now: int, notes: list[str] | None = None) -> int:
    """A point in time: `now`, a duration back from now (`24h` or `-24h`), or an ISO 8601 /
    RFC 3339 time (`2026-11-21T08:00:00Z`). A time without a zone is read as UTC, and a note
    saying so is added to `notes`."""
    text = text.strip()
    if text == "now":
        return now
    if _is_duration(text):
        return now - parse_duration_ms(text.removeprefix("-"))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ScopeError(
            f"bad time {text!r}: use a duration back from now (24h) or an ISO time (2026-11-21T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
        if notes is not None:
            notes.append(
                f"{text} has no time zone: read as UTC ({moment.strftime('%Y-%m-%dT%H:%M:%SZ')}); "
                "add Z or an offset such as +08:00"
            )
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Window:
    """A half-open time window [start, end) in milliseconds since the epoch."""

    start_ms: int
    end_ms: int
    # How the times given were read, where a person might have meant otherwise.
    notes: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, since: str, until: str | None = None, now: int | None = None) -> Window:
        now = now_ms() if now is None else now
        notes: list[str] = []
        end = parse_time_ms(until, now, notes) if until else now
        start = parse_time_ms(since, end if _is_duration(since) else now, notes)
        if start >= end:
            raise ScopeError(f"the window is empty: --since {since} is not before --until {until or 'now'}")
        return cls(start, end, tuple(notes))

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


# -- what exists --------------------------------------------------------------------------


def _listed(names: Iterable[str]) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "none"


def _unknown(what: str, name: str, known: set[str], where: str) -> ScopeError:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ScopeError(f"no {what} {name!r} in {where}{hint}: the {what}s there are {_listed(known)}")


def databases(client: InfluxQLClient) -> set[str]:
    """The databases the server has (InfluxDB's own `_internal` left out)."""
    return {row[0] for s in client.one("SHOW DATABASES") for row in s.values if not row[0].startswith("_")}


def check_database(client: InfluxQLClient, db: str) -> None:
    known = databases(client)
    if db not in known:
        raise _unknown("database", db, known, client.url)


def _tag_values(client: InfluxQLClient, db: str, key: str, where: str = "") -> set[str]:
    """The values of a tag in any measurement of the database, at any time (the index)."""
    statement = f"SHOW TAG VALUES WITH KEY = {quote_ident(key)}" + (f" WHERE {where}" if where else "")
    return {str(row[1]) for s in client.one(statement, db=db) for row in s.values}


def check_place(client: InfluxQLClient, db: str, place: Place) -> None:
    """Raise ScopeError for a district or zone the database has never heard of. A database
    with no data at all is not checked: every answer from it is empty anyway."""
    districts = _tag_values(client, db, "district")
    if not districts:
        return
    for district in place.districts:
        if district not in districts:
            raise _unknown("district", district, districts, db)
    if not place.zones:
        return
    scope = "".join(f" OR {quote_ident('district')} = {quote_string(d)}" for d in place.districts)[4:]
    zones = _tag_values(client, db, "zone", scope)
    where = db + (f" for {', '.join(place.districts)}" if place.districts else "")
    for zone in place.zones:
        if zone not in zones:
            raise _unknown("zone", zone, zones, where)
