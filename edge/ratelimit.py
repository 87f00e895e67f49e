"""Per-node rate limit: a token bucket per node id, checked before a message is decoded.

The key is the node id in the topic: the broker's ACL lets a node publish only under its
own id, so the topic names the account that sent it (a payload claiming another node is an
`id_mismatch` anyway). Telemetry, status and acks share one bucket per node; events have a
bucket of their own, so a node flooding telemetry still gets its alarms through, and a
node flooding events is throttled on its own.

A throttled message is not dropped: the commit loop quarantines it as `rate_limited` with
its payload, and counts it per node.

Written here rather than taken from a rate-limit library: the buckets live in the commit
loop's thread (no locks), their rate follows each node's reporting interval from the
registry, and idle buckets must be forgotten so random node ids cannot grow the table; a
bucket is a handful of lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

RATE_LIMITED = "rate_limited"


@dataclass(slots=True)
class Bucket:
    tokens: float
    at: float  # monotonic seconds of the last refill


class RateLimiter:
    """Token buckets keyed by node id. `rate_of(node)` is the sustained messages/s a node
    may send (None: unlimited); `burst` is how many it may send at once."""

    def __init__(
        self, rate_of: Callable[[str], float | None], burst: float, max_nodes: int = 100_000
    ) -> None:
        self.rate_of = rate_of
        self.burst = float(burst)
        self.max_nodes = max_nodes
        self.buckets: dict[str, Bucket] = {}

    def allow(self, node: str, now: float) -> bool:
        rate = self.rate_of(node)
        if rate is None:
            return True
        b = self.buckets.get(node)
        if b is None:
            if len(self.buckets) >= self.max_nodes and not self.forget_idle(now):
                # Still full of busy buckets (ids made up faster than they refill): drop
                # the older half; the table stays bounded whatever ids arrive.
                for old in list(self.buckets)[: self.max_nodes // 2]:
                    del self.buckets[old]
            b = self.buckets[node] = Bucket(self.burst, now)
        else:
            b.tokens = min(self.burst, b.tokens + (now - b.at) * rate)
            b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        return False

    def forget_idle(self, now: float) -> int:
        """Drop buckets that have refilled completely: they hold nothing a new one would not."""
        full = [
            node
            for node, b in self.buckets.items()
            if b.tokens + (now - b.at) * (self.rate_of(node) or 0.0) >= self.burst
        ]
        for node in full:
            del self.buckets[node]
        return len(full)
