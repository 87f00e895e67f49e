"""An edge gone for minutes, and a node without a clock whose readings wait at the broker:
real firmware under MicroPython (hil/sim.py), a private real Mosquitto, the real edge
process and the real InfluxDB 1.6, counted exactly (NodeSite.settle).

The outage itself is the one fixed time here (it is the scenario); everything else waits
for conditions."""

from __future__ import annotations

import re
import time

import pytest

from tests.support.fleet import node_log, readings
from tests.support.node_site import NodeSite, queue_records
from tests.support.waiting import wait_for

EDGE_AWAY_S = 120
CLOCKLESS_WAIT_S = 60


@pytest.fixture
def site(tmp_path, bundle, mosquitto_factory, influxdb, edges, request):
    broker = mosquitto_factory()
    db = "rx_" + request.node.name.removeprefix("test_")[:24]
    made = NodeSite(tmp_path, bundle, broker, influxdb, db, edges)
    yield made
    made.stop_nodes()
    for node in made.nodes.values():
        print(f"--- {node.node_id} ---\n{node.console_tail(30)}")


def console_since(node, offset: int) -> list[str]:
    """The node's console lines (its flash folder's console.log) after a byte offset."""
    with open(node.flash_dir / "console.log", "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


def console_size(node) -> int:
    path = node.flash_dir / "console.log"
    return path.stat().st_size if path.exists() else 0


def resends_allowed(away_s: float, interval_s: float) -> int:
    """The most "no receipt" resends SPEC 7.1.3 allows in `away_s` seconds without a
    receipt: the k-th waits 2^k intervals after the one before (the first after the last
    receipt, which came before the outage began), so k resends take at least
    (2 + 4 + ... + 2^k) intervals."""
    k, spent = 0, 0.0
    while spent + 2 ** (k + 1) * interval_s <= away_s:
        k += 1
        spent += 2**k * interval_s
    return k


def test_an_edge_gone_for_minutes_the_nodes_do_not_flood_and_nothing_is_lost(site):
    interval = 1.0
    site.add_node("leak", "rx-away-leak", "duty-cycled", interval)
    site.add_node("air", "rx-away-air", "always-on", interval)
    logs = {n: node_log(site.broker, n) for n in site.nodes}
    try:
        site.start_edge()
        site.start_nodes()
        site.wait_committed({n: {(1, 0), (1, 1)} for n in site.nodes})
        marks = {n: console_size(node) for n, node in site.nodes.items()}
        sent_before = {n: len(readings(log)) for n, log in logs.items()}
        away_from = time.monotonic()
        site.edge.stop()
        time.sleep(EDGE_AWAY_S)  # the outage: the scenario itself
        site.start_edge()
        away_s = time.monotonic() - away_from
        during = {n: console_since(node, marks[n]) for n, node in site.nodes.items()}
        at_broker = {n: readings(log)[sent_before[n] :] for n, log in logs.items()}
        site.wait_committed({n: set(node.taken()) for n, node in site.nodes.items()})
        counts = site.settle()
    finally:
        for log in logs.values():
            log.close()
    # The outage measured from before the stop to after the start: longer than the nodes
    # saw it, so the bound is generous. A loaded machine only makes resends later.
    allowed = resends_allowed(away_s + 2 * interval, interval)
    for node_id, lines in during.items():
        no_receipt = [ln for ln in lines if "resend: no receipt" in ln]
        assert 1 <= len(no_receipt) <= allowed, (node_id, allowed, no_receipt)
        # Each reading went to the broker once, and once more at most per resend.
        sent = at_broker[node_id]
        worst = max(sent.count(i) for i in set(sent))
        assert worst <= 1 + len(no_receipt), (node_id, worst, len(no_receipt))
        print(
            f"{node_id}: {len(no_receipt)} resends (at most {allowed}) in {away_s:.0f} s, "
            f"{len(sent)} readings through the broker for {len(set(sent))} taken, counts {counts[node_id]}"
        )


def test_a_clockless_node_whose_readings_waited_at_the_broker(site):
    """A node without NTP sends age_ms; its readings wait at the broker for a minute while
    the edge is away, and all arrive together. Each is stored once, at a time of its own,
    no earlier than its true sample time and no later than that plus the time it waited
    at the broker (its age was measured when it was published; SPEC 3.2). Soon after the
    edge is back, the node takes the edge's clock from a fresh receipt (SPEC 7.1.4) and
    times its readings itself."""
    interval = 2.0
    node = site.add_node("leak", "rx-clockless", "duty-cycled", interval, ntp=False)
    node_id = node.node_id
    log = node_log(site.broker, node_id)
    first_seen: dict[tuple[int, int], float] = {}
    try:
        site.start_edge().stop()  # its session stays at the broker, which keeps what comes
        node.start()
        waited_from = time.time()
        while time.time() - waited_from < CLOCKLESS_WAIT_S:  # the wait: the scenario itself
            for identity in readings(log):
                first_seen.setdefault(identity, time.time())
            time.sleep(0.05)
        # The node holds every reading, each with its local sample time (the sim's local
        # clock is the host's: the true time) and its fields, which tell its point apart.
        held = {(r["boot"], r["seq"]): r for r in queue_records(node.flash_dir)}
        assert set(held) == set(node.taken()) and all("l" in r for r in held.values()), held
        site.start_edge()
        edge_back = time.time()
        site.wait_committed({node_id: set(held)})
        committed_by = time.time()
        node.wait_for_console("clock from the edge, within", 120)
        within = int(re.search(r"within (\d+) ms", node.wait_for_console("clock from the edge")).group(1))

        def stored() -> list[list]:
            query = f"SELECT conductance, uptime_s, time_estimated FROM leak WHERE node='{node_id}'"
            return site.influx.query(query, db=site.db)[0]["values"]

        wait_for(lambda: sum(not row[3] for row in stored()) >= 3, 120, 0.2, "3 readings timed by the node")
        counts = site.settle()
        points = stored()
    finally:
        log.close()
    assert len(held) >= CLOCKLESS_WAIT_S / interval / 3, sorted(held)  # many readings waited
    times = [row[0] for row in points]
    assert len(set(times)) == len(times) == counts[node_id]["stored"]
    by_fields = {(row[1], row[2]): row for row in points}
    assert len(by_fields) == len(points), "two points with the same fields: cannot tell them apart"
    errors = []
    for identity, record in sorted(held.items()):
        fields = record["fields"]
        at, _, _, estimated = by_fields[(fields["conductance"], fields["uptime_s"])]
        assert estimated is True, identity  # its time came from age_ms
        # It waited at the broker from its first publish (seen by the test's subscriber, a
        # little after it) until the edge took it (before the commit the test saw), and a
        # second for the two observations' own delay.
        bound_ms = (committed_by - first_seen.get(identity, edge_back)) * 1000 + 1000
        error = at - record["l"]
        errors.append(error)
        assert -5 <= error <= bound_ms, (identity, error, bound_ms, errors)
    # Readings taken after the wait: the few sampled before the node's first fresh receipt
    # still estimated (they did not wait), then timed by the node with the edge's clock.
    clocked = [row for row in points if not row[3]]
    assert len(clocked) >= 3 and len(points) - len(clocked) - len(held) <= 3, points
    print(f"{len(held)} readings waited; errors {min(errors)}..{max(errors)} ms; clock within {within} ms")
