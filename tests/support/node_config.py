"""A node's config.json as a technician writes it before flashing, pointing at a broker
on this machine."""

from __future__ import annotations

import json
from pathlib import Path


def write_config(path: Path, broker_port: int, node: str = "p-0001", **extra) -> Path:
    config = {
        "node": node,
        "district": "xuhui",
        "zone": "caohejing",
        "kind": "parking",
        "platform": "sim",
        "interval_s": 1,
        "broker": {"host": "127.0.0.1", "port": broker_port},
    }
    config.update(extra)
    path.write_text(json.dumps(config))
    return path
