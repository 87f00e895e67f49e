"""Reading one sample out of the Prometheus text an edge serves on /metrics."""

from __future__ import annotations

import re


def metric(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample in Prometheus text, e.g. metric(t, "x_total", 'sink="city"')."""
    key = re.escape(name + ("{" + labels + "}" if labels else ""))
    m = re.search(rf"^{key} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None
