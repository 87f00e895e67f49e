"""An opened node box: node A's password (and the site CA) in an attacker's hands, against
the site's real setup: a TLS Mosquitto with the accounts and ACL `urbansense creds`
makes and client ids bound to accounts, a real edge (a subprocess) and InfluxDB.

A may try any client id and any subscription; node B and the edge must not notice."""

from __future__ import annotations

import threading

import pytest

from protocols import codec
from protocols.topics import topic as full_topic
from tests.support.influx_points import influx_count
from tests.support.secured_site import EDGE_USER, A, B, manhole_alarms, manhole_readings, secured_site
from tests.support.site import DISTRICT, ZONE
from tests.support.waiting import wait_for


@pytest.fixture
def site(tmp_path, mosquitto_factory, influxdb):
    return secured_site(tmp_path, mosquitto_factory, influxdb)


def test_a_cannot_take_over_b_s_session_or_its_queued_command(site):
    # B subscribes to its commands and goes to sleep: its session keeps them.
    b = site.node(B).connect()
    assert b.subscribe(full_topic(DISTRICT, ZONE, B, "cmd")) == 1
    b.close()
    # The edge's account, on the gateway-local listener, sends B a command.
    edge = site.edge_client("edge-cmd").connect()
    edge.publish_all([(full_topic(DISTRICT, ZONE, B, "cmd"), codec.encode_command("c-1", "ping"))])

    # A logs in as B's client id, takes whatever it is given and leaves.
    a = site.node(A, client_id=B).connect()
    assert a.connack is not None and not a.connack.is_failure
    a.subscribe(full_topic(DISTRICT, ZONE, B, "cmd"))
    a.close()

    # B wakes up: its command is still there, A saw nothing.
    b = site.node(B).connect()
    wait_for(lambda: b.messages, 30, what="B's queued command")
    assert [t for t, _ in b.messages] == [full_topic(DISTRICT, ZONE, B, "cmd")]
    assert a.messages == []

    # A, connected as "B" while B is awake, does not kick B off.
    a = site.node(A, client_id=B).connect()
    b.publish_all(manhole_readings(B, 5))
    a.close()
    assert b.connects == 1 and b.disconnects == 0
    b.close(), edge.close()


def test_a_cannot_kick_the_edge_and_b_s_alarms_and_readings_all_arrive(site, edges, tmp_path):
    edge = edges(site.edge_config(tmp_path / "edge")).start()
    connections = edge.connections()
    b = site.node(B).connect()

    # A in a tight reconnect loop under the edge's two client ids while B reports.
    stop = threading.Event()
    refused_or_renamed = []

    def hammer() -> None:
        while not stop.is_set():
            for cid in (EDGE_USER, f"{EDGE_USER}-events"):
                a = site.node(A, client_id=cid).connect()
                refused_or_renamed.append(a.connack)
                a.close()

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(refused_or_renamed) >= 4, 60, what="A's first takeover attempts")
        b.publish_all(manhole_readings(B, 40))
        b.publish_all(manhole_alarms(B, 20, first_seq=40))
        wait_for(lambda: len(refused_or_renamed) >= 10, 60, what="more takeover attempts")
    finally:
        stop.set()
        thread.join(60)
    wait_for(lambda: influx_count(site.influx, site.db, "manhole", "tilt_deg") >= 40, 60, what="B's readings")
    wait_for(lambda: influx_count(site.influx, site.db, "events", "state") >= 20, 60, what="B's alarms")
    assert influx_count(site.influx, site.db, "manhole", "tilt_deg") == 40
    assert influx_count(site.influx, site.db, "events", "state") == 20
    # The edge never lost a session to A: no reconnect, no "disconnected" in its log.
    assert edge.connections() == connections
    assert "disconnected" not in edge.log_text()
    b.close()


def test_a_joining_shared_subscriptions_takes_none_of_b_s_readings(site, edges, tmp_path):
    edge = edges(site.edge_config(tmp_path / "edge", shared=True)).start()
    zone = f"city/v1/{DISTRICT}/{ZONE}"
    # Every group name A can learn without the edge's config: the examples', the zone's,
    # the edge's account and client id; and a shared group of its own.
    # (A has one session only: its client id is its username, whatever it asks for.)
    guesses = [ZONE, DISTRICT, "workers", "edge", EDGE_USER, "bench", "a"]
    a = site.node(A).connect()
    for group in guesses:
        for filter_ in (f"{zone}/+/telemetry", f"{zone}/+/event", f"{zone}/#"):
            a.subscribe(f"$share/{group}/{filter_}")
    b = site.node(B).connect()
    b.publish_all(manhole_readings(B, 20))
    wait_for(lambda: influx_count(site.influx, site.db, "manhole", "tilt_deg") >= 20, 60, what="B's readings")
    assert influx_count(site.influx, site.db, "manhole", "tilt_deg") == 20
    assert a.messages == []
    a.close(), b.close()
    assert edge.running()
