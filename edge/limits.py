"""Size and depth limits the edge applies before any parsing.

The broker has `message_size_limit`, but the edge does not trust it (a misconfigured or
replaced broker, a bridge): every message is measured here first.
- A payload over the protocol's largest message (a telemetry batch, 8192 bytes) is
  `too_large`. Only its first bytes are kept for the dead-letter table, so a huge payload
  is not held in the inbox or written whole to disk.
- A topic longer than any protocol topic can be is `bad_topic`, kept truncated.
- JSON nested deeper than any protocol message needs is `too_large` before `json.loads`
  sees it: CPython's parser recurses per level and raises RecursionError (not ValueError)
  at about 1000 levels, which 8 KiB of brackets reaches.

The size and topic checks cost the same for any payload and run first; the depth scan
reads the payload, so the Screen runs it after the node's rate limit, and it reads each
byte once whatever the payload holds (a node chooses its payloads: a scan that can be made
to backtrack is a way to stall the edge for every other node).
"""

from __future__ import annotations

import re
from itertools import accumulate, repeat

from protocols.codec import MAX_BATCH_BYTES, MAX_DEPTH
from protocols.errors import BAD_TOPIC, TOO_LARGE

# The longest node topic: city/v1/ + three 32-char slugs + cmd/ack, with slashes, is
# under 130 characters; 256 leaves room and still bounds what is stored.
MAX_TOPIC_CHARS = 256
# How much of an oversize payload is kept for the dead-letter table: one just over the
# limit is kept whole (to see what it was); anything bigger is cut here, at ingest.
KEEP_BYTES = 2 * MAX_BATCH_BYTES

# A JSON string, to its closing quote or, if it has none, to the end. Its body is
# possessive (`*+`): once consumed it is never given back, and `sub` goes on from the end
# of each match, so every byte is read once. (A backtracking string pattern, such as
# `"(?:[^"\\]|\\.)*"`, costs quadratic time on an unterminated run of `\"`.)
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")  # minus one: +1 opens, -1 closes


def nesting_depth(payload: bytes) -> int:
    """Deepest bracket nesting outside JSON strings (an upper bound for invalid JSON),
    in time linear in the payload's size."""
    if payload.count(b"[") + payload.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be deeper than the limit: skip the scan (most messages)
    steps = _STRING.sub(b"", payload).translate(None, _NOT_BRACKET).translate(_STEP)
    # The running sum of +1/-1 is the depth after each bracket; all of it in C.
    return max(0, max(accumulate(map(int.__sub__, steps, repeat(1))), default=0))


def clip_payload(payload: bytes) -> tuple[bytes, int]:
    """(payload to keep, its original size): huge payloads are cut at ingest."""
    size = len(payload)
    if size > KEEP_BYTES:
        return bytes(payload[:KEEP_BYTES]), size
    return payload, size


def clip_topic(topic: str) -> str:
    return topic if len(topic) <= MAX_TOPIC_CHARS else topic[:MAX_TOPIC_CHARS] + "..."


def size_check(topic: str, size: int) -> tuple[str, str] | None:
    """(reason, detail) when a message breaks a limit that costs the same for every
    message (payload size, topic length), else None. `size` is the size the payload had
    on arrival (it may have been clipped since)."""
    if size > MAX_BATCH_BYTES:
        kept = "" if size <= KEEP_BYTES else f"; first {KEEP_BYTES} kept"
        return TOO_LARGE, f"{size} bytes (limit {MAX_BATCH_BYTES}){kept}"
    if len(topic) > MAX_TOPIC_CHARS:
        return BAD_TOPIC, f"topic of {len(topic)} characters (limit {MAX_TOPIC_CHARS})"
    return None


def depth_check(payload: bytes) -> tuple[str, str] | None:
    """The nesting limit: reads the payload (once)."""
    depth = nesting_depth(payload)
    if depth > MAX_DEPTH:
        return TOO_LARGE, f"JSON nested {depth} levels deep (limit {MAX_DEPTH})"
    return None
