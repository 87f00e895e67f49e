"""Readings with known identities (node, boot, seq), encoded as nodes send them."""

from __future__ import annotations

import time

from protocols import codec
from tests.support.site import topic


def now_ms() -> int:
    return int(time.time() * 1000)


def counted_readings(
    n: int, nodes: int = 10, prefix: str = "f", min_age_ms: int = 0
) -> list[tuple[str, bytes]]:
    """n air readings whose `uptime_s` field is their index, all with `age_ms`.

    `age_ms` makes the test strict: the edge stamps arrival - age_ms, so a reading written
    a second time after a redelivery would get another timestamp and show up as an extra
    point. Ages fall by 2 s per reading, so two readings of one node are 20 s apart and
    never merge, even when one is redelivered late."""
    out = []
    for i in range(n):
        node = f"{prefix}-{i % nodes:04d}"
        fields = {"pm25": float(i % 500), "uptime_s": float(i), "battery_v": 3.6}
        out.append(
            (
                topic(node, "telemetry"),
                codec.encode_reading(node, "air", 1, i // nodes, fields, age_ms=min_age_ms + (n - i) * 2000),
            )
        )
    return out
