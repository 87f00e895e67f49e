"""Faults against a real broker: the broker stopped mid-run and restarted, the network cut
for a minute, a node reset (power loss) with readings still queued, a queue that
overflows. Afterwards every reading a node took is at the broker once per
(node, boot, seq) after deduplication, first arrivals in order, and the readings beyond
the queue bound are exactly the ones the node counted as dropped."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.edge_standin import ReceiptEdge
from tests.support.fleet import decoded, make_node, node_log, readings


def identities(log) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    tm = readings(log)
    ev = [(e["boot"], e["seq"]) for e in decoded(log, "event")]
    return tm, ev


def dropped(node) -> int:
    path = node.flash_dir / "state" / "counters.json"
    return json.loads(path.read_text())["dropped"] if path.exists() else 0


def strictly_increasing(ids: list[tuple[int, int]]) -> bool:
    first = list(dict.fromkeys(ids))
    return all(a < b for a, b in zip(first, first[1:]))


@pytest.mark.slow
def test_broker_restart_network_cut_power_loss_and_overflow(tmp_path, bundle, mosquitto_factory):
    broker = mosquitto_factory()
    nodes = {
        "r-park": make_node(tmp_path, bundle, broker, "parking", "r-park", "always-on", 0.25, queue_max=1000),
        "r-hole": make_node(
            tmp_path, bundle, broker, "manhole", "r-hole", "duty-cycled", 0.5, queue_max=1000
        ),
        "r-air": make_node(tmp_path, bundle, broker, "air", "r-air", "always-on", 0.25, queue_max=20),
    }
    logs = {nid: node_log(broker, nid) for nid in nodes}
    edge = ReceiptEdge(broker.host, broker.port)  # receipts, as the edge sends them
    try:
        for node in nodes.values():
            node.set_stimulus("ch4_lel", 0.5)
            node.start()
        for nid, log in logs.items():
            log.wait_for(lambda ln: len(readings(ln)) >= 3, what=f"{nid} first readings")

        # 1. The broker goes away mid-run and comes back.
        broker.stop()
        time.sleep(3)
        broker.start()

        # 2. A network cut of one minute; a gas alarm happens during it.
        for node in nodes.values():
            node.cut_network(True)
        time.sleep(5)
        nodes["r-hole"].set_stimulus("ch4_lel", 12.0)
        time.sleep(55)
        for node in nodes.values():
            node.cut_network(False)

        # 3. A node loses power with readings still queued in flash.
        park = nodes["r-park"]
        logs["r-park"].wait_for(
            lambda ln: len(readings(ln)) >= 250, timeout=60, what="r-park to replay its outage"
        )
        park.cut_network(True)
        time.sleep(2)
        assert json.loads((park.flash_dir / "queue" / "tm" / "head").read_text()) is not None
        park.power_loss()
        park.wait_for_console("boot 2")
        park.cut_network(False)
        nodes["r-hole"].set_stimulus("ch4_lel", 0.5)
        time.sleep(2)

        # Everything taken so far must arrive (minus what the full queue dropped).
        taken = {nid: set(node.taken()) for nid, node in nodes.items()}
        for nid, log in logs.items():
            node = nodes[nid]

            def caught_up(ln, nid=nid, node=node):
                tm, ev = identities(ln)
                return len(taken[nid] - set(tm) - set(ev)) == dropped(node)

            log.wait_for(caught_up, timeout=90, what=f"{nid} to deliver its queue")
    finally:
        for node in nodes.values():
            node.stop()
        for log in logs.values():
            log.close()
        edge.close()

    for nid, node in nodes.items():
        tm, ev = identities(logs[nid])
        received = set(tm) | set(ev)
        missing = taken[nid] - received
        # Nothing invented: every identity received was a reading the node took.
        assert received <= set(node.taken()), nid
        assert len(missing) == dropped(node), (nid, sorted(missing)[:10])
        assert strictly_increasing(tm), nid
        assert strictly_increasing(ev), nid
    # The big queues never overflowed; the small one did, and said so.
    assert dropped(nodes["r-park"]) == 0 and dropped(nodes["r-hole"]) == 0
    assert dropped(nodes["r-air"]) > 100
    # The power loss began a new boot, and the old boot's queued readings still arrived.
    park_boots = {b for b, _ in readings(logs["r-park"])}
    assert park_boots == {1, 2}
    # The alarm raised during the cut was delivered after it, and cleared afterwards.
    gas = [(e["event"], e["state"]) for e in decoded(logs["r-hole"], "event") if e["event"] == "ch4"]
    assert list(dict.fromkeys(gas)) == [("ch4", True), ("ch4", False)]
