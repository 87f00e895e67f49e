"""The one site the edge tests and benchmarks run: its district, zone and topics."""

from __future__ import annotations

DISTRICT = "xuhui"
ZONE = "caohejing"


def topic(node: str, channel: str) -> str:
    return f"city/v1/{DISTRICT}/{ZONE}/{node}/{channel}"
