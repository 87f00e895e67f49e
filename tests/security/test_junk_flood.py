"""Node A floods the edge with junk while InfluxDB is down and node B's readings wait in
the buffer: the buffer's cap must never drop B's readings to make room for A's refused
messages. A real Mosquitto set up as the site's, a real edge, a real InfluxDB that is
stopped and started again."""

from __future__ import annotations

import pytest

from edge.deadletters import SAMPLE_PER_NODE, counted
from tests.support.dead_letters import messages_by_reason
from tests.support.influx_points import influx_count
from tests.support.secured_site import A, B, manhole_batches, secured_site
from tests.support.site import topic
from tests.support.waiting import wait_for

B_READINGS = 1600
A_MESSAGES = 2000
JUNK = 8100  # bytes: under the 8 KiB limit, so each is refused only for what it says
BATCH = 64  # readings per message, as a node replays its queue
BURST = 30  # node_burst: B's backlog (25 batches) fits, A's flood does not
CAP = 4 * 1024 * 1024  # buffer cap: B's readings fit; A's junk, stored whole, is 4x it


@pytest.fixture
def site(tmp_path, mosquitto_factory, influxdb_factory):
    return secured_site(tmp_path, mosquitto_factory, influxdb_factory())


def a_rows(edge) -> list[tuple[str, int | None, str]]:
    return edge.query(
        "SELECT reason, length(payload), detail FROM dead_letters WHERE topic LIKE ? ORDER BY id",
        (f"%/{A}/%",),
    )


def accounted(edge) -> int:
    return sum(messages_by_reason(edge, f"%/{A}/%").values())


def test_a_s_junk_during_an_outage_leaves_all_of_b_s_buffered_readings(site, edges, tmp_path):
    site.influx.stop()
    config = site.edge_config(
        tmp_path / "edge",
        buffer={"max_bytes": CAP},
        extra={"limits": {"node_rate": 0.0001, "node_burst": BURST}},
    )
    edge = edges(config).start()
    b = site.node(B).connect()
    b.publish_all(manhole_batches(B, B_READINGS, BATCH))
    a = site.node(A).connect()
    for _ in range(0, A_MESSAGES, 200):
        a.publish_all([(topic(A, "telemetry"), b"x" * JUNK)] * 200)
    a.close(), b.close()
    # Every one of A's messages is accounted for: stored whole, or counted in a row that
    # says how many were not.
    wait_for(lambda: accounted(edge) >= A_MESSAGES, 120, what="A's messages accounted for")
    assert edge.stop() == 0
    rows = a_rows(edge)
    stored = [r for r in rows if r[1] is not None]
    counts = [counted(r[2]) for r in rows if r[1] is None]
    assert len(stored) + sum(counts) == A_MESSAGES, (len(stored), counts)
    # At most a sample per node and window (a window with more has a counting row).
    assert len(stored) <= SAMPLE_PER_NODE * (len(counts) + 1)
    # InfluxDB back: every one of B's readings arrives, none was dropped by the cap.
    assert "oldest telemetry" not in edge.log_text(), edge.log_tail()
    site.influx.start()
    edge.start()
    wait_for(
        lambda: influx_count(site.influx, site.db, "manhole", "tilt_deg") >= B_READINGS,
        180,
        what="B's readings",
    )
    assert influx_count(site.influx, site.db, "manhole", "tilt_deg") == B_READINGS
