"""Real firmware nodes (the MicroPython unix port, hil/sim.py) and a running edge on a
3-member NATS tier, through kill -9 of the nodes' member, of the edge's member, of the
leader of the stream QoS 1 messages are stored in, and a member that comes back with its
disk lost. Afterwards InfluxDB holds exactly one point for every reading and event each
node took: nothing lost, nothing doubled.

Lean on purpose (three duty-cycled nodes, one-second intervals, each fault once). The
soak, not part of the suite, repeats every fault sequence N times on the same nodes:
    URBANSENSE_NATS_SOAK_ROUNDS=N bash deploy/run.sh test tests/nats/test_node_faults.py"""

from __future__ import annotations

import os

import pytest

from hil.services import MQTT_MESSAGES
from tests.support.edge_process import v1_sink, write_config
from tests.support.fleet import make_node
from tests.support.node_points import node_points, settle_and_stop, taken
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

KINDS = ("parking", "leak", "manhole")
ROUNDS = int(os.environ.get("URBANSENSE_NATS_SOAK_ROUNDS", "1"))


def start_site(cluster, influx, tmp_path, edges, bundle, name: str):
    """An edge on every member, three nodes on a member other than the edge's."""
    config = write_config(
        tmp_path / "edge",
        mqtt_port=0,
        client_id=f"edge-{name}",
        mqtt_extra={"servers": cluster.addresses, "broker": "nats"},
        sinks=[v1_sink("district", influx, name)],
    )
    edge = edges(config).start()
    edge_member = wait_for(lambda: cluster.holding(f"edge-{name}"), 30, what="the edge's member")
    node_member = next(m for m in cluster.members if m is not edge_member)
    # The nodes list every member, theirs first: they fail over to the others.
    servers = [node_member.address] + [a for a in cluster.addresses if a != node_member.address]
    nodes = [
        make_node(
            tmp_path,
            bundle,
            node_member,
            kind,
            f"{name.replace('_', '-')}-{kind[0]}",
            "duty-cycled",
            1.0,
            servers=servers,
        )
        for kind in KINDS
    ]
    for node in nodes:
        node.start()
    return edge, edge_member, node_member, nodes


def progress(nodes, influx, db: str, more: int = 3) -> None:
    """Each node gets `more` points further into InfluxDB than it has now."""
    marks = {n.node_id: node_points(influx, db, n) for n in nodes}
    for node in nodes:
        wait_for(
            lambda n=node: node_points(influx, db, n) >= marks[n.node_id] + more,
            120,
            what=f"{node.node_id} to get {more} more points into InfluxDB",
        )


def assert_exact(nodes, influx, db: str) -> None:
    settle_and_stop(nodes, influx, db)
    for node in nodes:
        print(node.console_tail(30))
    counts = {n.node_id: (taken(n), node_points(influx, db, n)) for n in nodes}
    assert all(took == stored for took, stored in counts.values()), f"(taken, in InfluxDB): {counts}"
    assert all(took >= 10 for took, _ in counts.values()), counts


def test_nodes_member_and_edges_member_killed(nats_cluster, influxdb, tmp_path, edges, bundle):
    db = "nats_nodes_kill"
    edge, edge_member, node_member, nodes = start_site(nats_cluster, influxdb, tmp_path, edges, bundle, db)
    try:
        progress(nodes, influxdb, db)
        for _ in range(ROUNDS):
            # The nodes' member dies: each wake's first connect fails, the next goes to
            # another member, where the session is.
            errors = {n.node_id: n.stats.errors for n in nodes}
            node_member.kill()
            progress(nodes, influxdb, db)
            # Each node met the dead member (a console error line) and went on past it.
            assert all(n.stats.errors > errors[n.node_id] for n in nodes), {
                n.node_id: n.stats.errors for n in nodes
            }
            nats_cluster.restart_member(node_member, kill=False)
            progress(nodes, influxdb, db)
            # The edge's member dies: the edge fails over; its session waits in the cluster.
            edge_member = wait_for(lambda: nats_cluster.holding(f"edge-{db}"), 30, what="the edge's member")
            edge_member.kill()
            progress(nodes, influxdb, db)
            nats_cluster.restart_member(edge_member, kill=False)
        assert_exact(nodes, influxdb, db)
    finally:
        for node in nodes:
            node.stop()
    assert edge.running()


def test_stream_leader_killed_and_a_member_disk_lost(nats_cluster, influxdb, tmp_path, edges, bundle):
    db = "nats_nodes_leader"
    edge, _, node_member, nodes = start_site(nats_cluster, influxdb, tmp_path, edges, bundle, db)
    try:
        progress(nodes, influxdb, db)
        for _ in range(ROUNDS):
            # The stream's leader dies: a new one is elected while PUBACKs wait.
            leader = nats_cluster.stream_leader(MQTT_MESSAGES)
            leader.kill()
            progress(nodes, influxdb, db)
            nats_cluster.restart_member(leader, kill=False)
            progress(nodes, influxdb, db)
            # A member whose disk is lost: it comes back empty, catches up from the others.
            lost = next(m for m in nats_cluster.members if m is not node_member)
            nats_cluster.restart_member(lost, kill=True, wipe_disk=True)
            progress(nodes, influxdb, db)
        assert_exact(nodes, influxdb, db)
    finally:
        for node in nodes:
            node.stop()
    assert edge.running()
