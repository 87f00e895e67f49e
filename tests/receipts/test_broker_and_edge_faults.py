"""Nothing lost between the node and the database (protocols/SPEC.md 7.1): real firmware
under MicroPython (hil/sim.py), a private real Mosquitto killed with SIGKILL, the real
edge process and the real InfluxDB 1.6. Each test counts exactly (NodeSite.settle): every
reading a node took is committed once and is one point in InfluxDB (or, the newest few,
still in its flash queue when the nodes stop), the edge sees no seq gap, and no node
dropped anything. The broker saves its state once an hour here (LATE_SAVE): a `kill -9`
loses everything it acknowledged, so what reaches the database came from the nodes'
queues, sent again because no receipt covered it."""

from __future__ import annotations

import pytest

from tests.support.node_site import LATE_SAVE, NodeSite, queued, wipe_broker
from tests.support.waiting import wait_for

INTERVAL_S = 1.0


@pytest.fixture
def site_for(tmp_path, bundle, mosquitto_factory, influxdb, edges):
    made: list[NodeSite] = []

    def make(db: str, broker_config: str = LATE_SAVE, **edge_extra) -> NodeSite:
        broker = mosquitto_factory(extra_config=broker_config)
        site = NodeSite(tmp_path, bundle, broker, influxdb, db, edges, edge_extra)
        made.append(site)
        return site

    yield make
    for site in made:
        site.stop_nodes()
        for node in site.nodes.values():
            print(f"--- {node.node_id} ---\n{node.console_tail(30)}")


def two_nodes(site: NodeSite, prefix: str) -> None:
    """A duty-cycled leak node and an always-on air node, 1 s apart."""
    site.add_node("leak", f"{prefix}-leak", "duty-cycled", INTERVAL_S)
    site.add_node("air", f"{prefix}-air", "always-on", INTERVAL_S)


def published_at_least(site: NodeSite, n: int) -> bool:
    return all(node.stats.published >= n for node in site.nodes.values())


def taken(site: NodeSite) -> dict[str, set[tuple[int, int]]]:
    return {node_id: set(node.taken()) for node_id, node in site.nodes.items()}


def test_broker_killed_with_the_edge_away(site_for):
    site = site_for("rx_kill_away")
    two_nodes(site, "rx-ka")
    site.start_edge().stop()  # its session stays at the broker, which queues for it
    site.start_nodes()
    wait_for(lambda: published_at_least(site, 4), 90, 0.1, "4 readings per node acknowledged")
    before = taken(site)
    # Never saved: the broker loses all it acknowledged.
    assert not (site.broker.workdir / "data" / "mosquitto.db").exists()
    site.broker.kill()
    site.broker.start()
    site.start_edge()
    site.wait_committed(before)
    counts = site.settle()
    assert all(c["stored"] >= 4 for c in counts.values()), counts


def test_broker_killed_with_the_edge_running_mid_burst(site_for):
    site = site_for("rx_kill_burst")
    two_nodes(site, "rx-kb")
    site.start_edge()
    site.start_nodes()
    site.wait_committed({n: {(1, 0), (1, 1)} for n in site.nodes})
    # A network cut queues readings on the nodes; back online, each sends them in a burst.
    for node in site.nodes.values():
        node.cut_network(True)
    marks = {n: len(ids) + 4 for n, ids in taken(site).items()}
    wait_for(lambda: all(len(ids) >= marks[n] for n, ids in taken(site).items()), 90, 0.1, "readings queued")
    sent = {n: node.stats.published for n, node in site.nodes.items()}
    for node in site.nodes.values():
        node.cut_network(False)
    wait_for(
        lambda: any(node.stats.published > sent[n] for n, node in site.nodes.items()), 90, 0.01, "a burst"
    )
    before = taken(site)
    site.broker.kill()
    site.broker.start()
    site.wait_committed(before)
    site.settle()


def test_broker_restarted_from_an_empty_persistence_folder(site_for):
    # The broker saves every second (the tests' setting), and its disk is lost.
    site = site_for("rx_disk_lost", broker_config="")
    two_nodes(site, "rx-dl")
    site.start_edge().stop()
    site.start_nodes()
    wait_for(lambda: published_at_least(site, 4), 90, 0.1, "4 readings per node acknowledged")
    saved = site.broker.workdir / "data" / "mosquitto.db"
    wait_for(saved.exists, 30, 0.1, "the broker's first save")
    before = taken(site)
    site.broker.kill()
    wipe_broker(site.broker)
    site.broker.start()
    site.start_edge()
    site.wait_committed(before)
    site.settle()


def test_edge_killed_between_a_commit_and_the_receipt(site_for):
    """An edge with receipts off commits and never confirms: the state an edge killed
    between its COMMIT and its receipt leaves, made exactly. Killed, then back with
    receipts on: the nodes send everything again, the edge confirms the duplicates and
    stores nothing twice."""
    site = site_for("rx_edge_kill")
    two_nodes(site, "rx-ek")
    site.start_edge(receipts={"enabled": False})
    site.start_nodes()
    site.wait_committed({n: {(1, s) for s in range(4)} for n in site.nodes})
    site.edge.kill()
    before = taken(site)
    # Unconfirmed, every record is still in the nodes' flash.
    for node_id, node in site.nodes.items():
        assert before[node_id] & site.seen(node_id) <= set(queued(node.flash_dir)), node_id
    site.start_edge()
    # Confirmed at last: the records of before the kill leave the nodes' queues.
    for node_id, node in site.nodes.items():
        wait_for(
            lambda n=node, b=before[node_id]: not set(queued(n.flash_dir)) & b,
            120,
            0.2,
            f"{node_id} confirmed",
        )
    site.wait_committed(before)
    site.settle()


def test_node_power_loss_between_publishing_and_the_receipt(site_for):
    site = site_for("rx_power", broker_config="")
    leak = site.add_node("leak", "rx-pl-leak", "duty-cycled", INTERVAL_S)
    air = site.add_node("air", "rx-pl-air", "always-on", INTERVAL_S)
    site.start_edge()
    site.start_nodes()
    site.wait_committed({n: {(1, 0)} for n in site.nodes})
    # The duty-cycled node: the broker has acknowledged its records, no receipt read yet.
    leak.cut_power_at("published")
    leak.wait_for_console("power cut at published", 60)
    # The always-on node: SIGKILL at any moment, RTC memory lost.
    air.power_loss()
    for node in (leak, air):
        node.wait_for_console("boot 2", 60)
    # "boot 2" is printed before the boot's first reading is taken: wait for that reading.
    wait_for(
        lambda: all(2 in {b for b, _ in ids} for ids in taken(site).values()),
        60,
        0.05,
        "a reading taken in boot 2 on each node",
    )
    before = taken(site)
    for node_id, ids in before.items():
        assert {1, 2} <= {b for b, _ in ids}, node_id
    site.wait_committed(before)
    site.settle()
