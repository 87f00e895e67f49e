"""Helpers for tests that run whole virtual nodes against a real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hil.sim import SimNode, node_config
from protocols.decoder import decode
from tests.support.broker_log import BrokerLog


def site_node_config(broker, kind: str, node_id: str, schedule: str, interval_s: float, **extra) -> dict:
    """A sim node's config.json in the tests' zone (xuhui/caohejing), seeded alike."""
    return node_config(
        node_id,
        kind,
        "xuhui",
        "caohejing",
        broker.host,
        broker.port,
        interval_s,
        schedule=schedule,
        seed=1,
        **extra,
    )


def make_node(
    tmp_path: Path, bundle: Path, broker, kind: str, node_id: str, schedule: str, interval_s: float, **extra
) -> SimNode:
    cfg = site_node_config(broker, kind, node_id, schedule, interval_s, **extra)
    return SimNode(tmp_path / node_id, cfg, bundle=bundle)


def node_log(broker, node_id: str) -> BrokerLog:
    return BrokerLog(broker.host, broker.port, [f"city/v1/xuhui/caohejing/{node_id}/#"])


def decoded(log: BrokerLog, channel: str) -> list[dict]:
    """Every message on a channel, through the reference decoder (which raises on any
    protocol violation, so this also proves the node speaks protocol v1)."""
    now_ms = int(time.time() * 1000)
    return [decode(m.topic, m.payload, now_ms=now_ms) for m in log.on("/" + channel)]


def readings(log: BrokerLog) -> list[tuple[int, int]]:
    """(boot, seq) of every telemetry reading received, in arrival order (batches expanded)."""
    out = []
    for msg in decoded(log, "telemetry"):
        out.extend((r["boot"], r["seq"]) for r in msg["readings"])
    return out


@contextmanager
def started(node: SimNode, log: BrokerLog | None = None) -> Iterator[SimNode]:
    """Run the node for the block; afterwards stop it, close the log, and print the node's
    console (pytest shows it when the test fails)."""
    node.start()
    try:
        yield node
    finally:
        node.stop()
        if log is not None:
            log.close()
        print(node.console_tail(60))
