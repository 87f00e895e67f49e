"""Screen: the checks a message passes before it is decoded, cheapest first.

1. size and topic-length limits (`edge.limits`, the same cost for any message):
   `too_large` / `bad_topic`;
2. the per-node rate limit (`edge.ratelimit`): `rate_limited`;
3. the nesting limit (`edge.limits`, reads the payload once): `too_large`. After the rate
   limit, so a node's crafted payloads cost the edge at most its burst of scans.
What gets through goes to the Validator (decoder, identity and kind checks).

Retained messages do not spend a node's tokens: the broker replays one per retained
topic each time the edge subscribes (after every reconnect), which the node did not send
then; they are bounded by the node's few topics, not by what the node sends. A node
cannot set the flag on what the edge receives live: under MQTT 3.1.1 the broker clears
it on delivery to an established subscription.
"""

from __future__ import annotations

from edge.config import LimitsConfig
from edge.limits import depth_check, size_check
from edge.ratelimit import RATE_LIMITED, RateLimiter
from edge.registry import NodeRegistry
from protocols import thresholds
from protocols.topics import EVENT, ROOT


def topic_node(topic: str) -> tuple[str, str] | None:
    """(node, channel) of a well-shaped node topic, else None (the decoder rejects it)."""
    parts = topic.split("/", 6)
    if len(parts) < 6 or parts[0] != ROOT:
        return None
    return parts[4], parts[5]


class Screen:
    def __init__(self, limits: LimitsConfig, registry: NodeRegistry) -> None:
        self.limits = limits
        self.registry = registry
        self.messages = RateLimiter(self._node_rate, limits.node_burst)
        self.events = RateLimiter(lambda node: limits.event_rate or None, limits.event_burst)

    def _node_rate(self, node: str) -> float | None:
        rate = self.limits.node_rate
        if rate == "auto":
            state = self.registry.nodes.get(node)
            # A node not seen yet gets the shortest interval a node may have: the most lenient.
            interval_s = (
                self.registry.interval_ms(state) / 1000 if state is not None else thresholds.INTERVAL_MIN_S
            )
            return self.limits.rate_factor / interval_s
        return rate or None

    def check(
        self, topic: str, payload: bytes, size: int, now: float, retained: bool = False
    ) -> tuple[str, str, str | None] | None:
        """(reason, detail, throttled node or None) for a message to quarantine, else None.
        `now` is monotonic seconds; `retained`: the broker's replay of a retained message."""
        problem = size_check(topic, size)
        if problem is None:
            throttled = None if retained else self._throttled(topic, now)
            if throttled is not None:
                return throttled
            problem = depth_check(payload)
        return None if problem is None else (problem[0], problem[1], None)

    def _throttled(self, topic: str, now: float) -> tuple[str, str, str] | None:
        where = topic_node(topic)
        if where is None:
            return None
        node, channel = where
        limiter = self.events if channel == EVENT else self.messages
        if limiter.allow(node, now):
            return None
        kind = "events" if channel == EVENT else "messages"
        return (
            RATE_LIMITED,
            f"node {node} over {limiter.rate_of(node):.3g} {kind}/s (burst {limiter.burst:g})",
            node,
        )

    def forget_idle(self, now: float) -> None:
        self.messages.forget_idle(now)
        self.events.forget_idle(now)
