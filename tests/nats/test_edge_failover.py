"""The edge on a 3-member NATS tier, fed by publishers that publish as nodes do (QoS 1,
every PUBACK awaited, the next member when theirs is lost): kill -9 of the member holding
the edge's session, then of the leader of the stream the MQTT gateway stores QoS 1
messages in. InfluxDB then holds exactly the readings published, none missing and none
doubled (tests/support/readings.py gives each an age, so a reading written twice would
show up twice)."""

from __future__ import annotations

import pytest

from hil.services import MQTT_MESSAGES
from tests.support.edge_process import v1_sink, write_config
from tests.support.influx_points import assert_exactly, uptimes
from tests.support.publisher import publish_paced
from tests.support.readings import counted_readings
from tests.support.tier_publisher import TierPublisher
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def test_edge_fails_over_when_its_member_and_the_stream_leader_die(nats_cluster, influxdb, tmp_path, edges):
    db = "nats_edge_failover"
    config = write_config(
        tmp_path,
        mqtt_port=0,
        client_id="edge-nats",
        mqtt_extra={"servers": nats_cluster.addresses, "broker": "nats"},
        sinks=[v1_sink("district", influxdb, db)],
    )
    edge = edges(config).start()
    held = wait_for(lambda: nats_cluster.holding("edge-nats"), 30, what="the edge's member")
    ports = [m.port for m in nats_cluster.members]
    # More readings than the test needs: the publisher runs until both faults are behind
    # it (a member's restart can take long on a loaded machine), then stops; InfluxDB must
    # then hold exactly the readings it published.
    readings = counted_readings(30_000, prefix="nf")
    # Starting on another member than the edge's, so that member's death is the edge's.
    pub = TierPublisher(ports, "nats-publisher", first=nats_cluster.members.index(held) + 1)

    def stored() -> int:
        return len(uptimes(influxdb, db))

    try:
        sender = publish_paced(pub, readings, per_second=150)
        wait_for(lambda: stored() >= 200, 60, what="the first readings in InfluxDB")

        # 1. The member holding the edge's session dies; the edge goes on on another one.
        held.kill()
        mark = stored()
        wait_for(lambda: stored() >= mark + 300, 120, what="readings after the edge's member died")
        nats_cluster.restart_member(held, kill=False)

        # 2. The leader of the stream every QoS 1 message is stored in dies mid-stream.
        leader = nats_cluster.stream_leader(MQTT_MESSAGES)
        leader.kill()
        mark = stored()
        wait_for(lambda: stored() >= mark + 300, 120, what="readings after the stream leader died")
        nats_cluster.restart_member(leader, kill=False)

        sender.finish()
        sender.join(180)
        assert not sender.is_alive(), "the publisher did not get every PUBACK"
        assert sender.error is None, sender.error
        n = sender.published
        assert mark + 300 <= n < len(readings), (mark, n)
        assert_exactly(influxdb, db, n, timeout=120)
    finally:
        pub.close()
    assert edge.running()
    assert edge.query("SELECT count(*) FROM seen WHERE node LIKE 'nf-%'")[0][0] == n
