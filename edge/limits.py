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
"""

from __future__ import annotations

import re

from protocols.codec import MAX_BATCH_BYTES, MAX_DEPTH
from protocols.errors import BAD_TOPIC, TOO_LARGE

# The longest node topic: city/v1/ + three 32-char slugs + cmd/ack, with slashes, is
# under 130 characters; 256 leaves room and still bounds what is stored.
MAX_TOPIC_CHARS = 256
# A batch is object > batch list > item > fields (4); an ack's free-form `result` may add
# a few. Nothing valid comes near 32.
# How much of an oversize payload is kept for the dead-letter table: one just over the
# limit is kept whole (to see what it was); anything bigger is cut here, at ingest.
KEEP_BYTES = 2 * MAX_BATCH_BYTES

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(payload: bytes) -> int:
    """Deepest bracket nesting outside JSON strings (an upper bound for invalid JSON)."""
    if payload.count(b"[") + payload.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be deeper than the limit: skip the scan (most messages)
    brackets = _STRING.sub(b"", payload).translate(None, _NOT_BRACKET)
    depth = deepest = 0
    for b in brackets:
        if b in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def clip_payload(payload: bytes) -> tuple[bytes, int]:
    """(payload to keep, its original size): huge payloads are cut at ingest."""
    size = len(payload)
    if size > KEEP_BYTES:
        return bytes(payload[:KEEP_BYTES]), size
    return payload, size


def clip_topic(topic: str) -> str:
    return topic if len(topic) <= MAX_TOPIC_CHARS else topic[:MAX_TOPIC_CHARS] + "..."


def precheck(topic: str, payload: bytes, size: int) -> tuple[str, str] | None:
    """(reason, detail) when a message breaks a limit, else None. `size` is the size the
    payload had on arrival (it may have been clipped since)."""
    if size > MAX_BATCH_BYTES:
        kept = "" if size <= KEEP_BYTES else f"; first {KEEP_BYTES} kept"
        return TOO_LARGE, f"{size} bytes (limit {MAX_BATCH_BYTES}){kept}"
    if len(topic) > MAX_TOPIC_CHARS:
        return BAD_TOPIC, f"topic of {len(topic)} characters (limit {MAX_TOPIC_CHARS})"
    depth = nesting_depth(payload)
    if depth > MAX_DEPTH:
        return TOO_LARGE, f"JSON nested {depth} levels deep (limit {MAX_DEPTH})"
    return None
