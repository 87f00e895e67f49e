"""The edge delivers its alarms to a real Alertmanager, which tells the institution
responsible (a real webhook receiver): the alarm, what a person needs to act on it, and
its resolution; an open alarm stays open across restarts of the edge and Alertmanager."""

from __future__ import annotations

from tests.support.dispatch import dispatch_edge_config, event, responsibility
from tests.support.metrics import metric
from tests.support.publisher import Publisher
from tests.support.site import DISTRICT, ZONE
from tests.support.waiting import wait_for

PLACE = "Caohejing Rd 12, by the bus stop"


def _edge(tmp_path, mosquitto, influxdb, am, edges, client_id="edge-alarms"):
    config = dispatch_edge_config(
        tmp_path / "edge", mosquitto.port, influxdb, am, client_id, places={"m-0001": PLACE}
    )
    return edges(config).start()


def test_alarm_reaches_its_institution_with_what_a_person_needs_and_its_resolution(
    tmp_path, mosquitto, influxdb, webhook, alertmanager, edges
):
    am, _ = alertmanager(responsibility(webhook))
    edge = _edge(tmp_path, mosquitto, influxdb, am, edges)
    pub = Publisher(mosquitto.port, "alarms-pub-1")
    try:
        pub.publish_all([event("m-0001", "manhole", "ch4", True, 10, value=30.0)])
        told = webhook.wait_alert("xuhui-water", "firing", timeout=60, node="m-0001")
        assert told is not None, webhook.notifications()
        alert = told.alerts_matching("firing", node="m-0001")[0]
        assert alert["labels"] == {
            "alertname": "ch4",
            "district": DISTRICT,
            "zone": ZONE,
            "node": "m-0001",
            "kind": "manhole",
            "event": "ch4",
            "severity": "critical",
            "level": "1",
        }
        notes = alert["annotations"]
        assert notes["place"] == PLACE
        assert notes["value"] == "30"
        assert notes["raised_at"].endswith("Z") and notes["alarm_id"] == "m-0001/1/10"
        assert "m-0001" in notes["recent_data"] and "urbansense query influxql" in notes["recent_data"]
        assert PLACE in notes["summary"]

        pub.publish_all([event("m-0001", "manhole", "ch4", False, 11, value=2.0)])
        resolved = webhook.wait_alert("xuhui-water", "resolved", told.received, timeout=60, node="m-0001")
        assert resolved is not None, webhook.notifications()
        assert resolved.alerts_matching("resolved", node="m-0001")[0]["annotations"]["cleared_value"] == "2"
        # No other institution was told, and Alertmanager holds no open alert any more.
        assert {n.receiver for n in webhook.notifications()} == {"xuhui-water"}
        wait_for(lambda: am.alerts() == [], 30, what="Alertmanager to hold no open alert")
        text = edge.metrics_text()
        assert metric(text, "urbansense_edge_alertmanager_alerts_total", 'state="firing"') == 1
        assert metric(text, "urbansense_edge_alertmanager_alerts_total", 'state="resolved"') == 1
        assert metric(text, "urbansense_edge_alertmanager_open_alarms") == 0
    finally:
        pub.close()


def test_info_events_are_not_alarms(tmp_path, mosquitto, influxdb, webhook, alertmanager, edges):
    am, _ = alertmanager(responsibility(webhook))
    _edge(tmp_path, mosquitto, influxdb, am, edges, client_id="edge-alarms-info")
    pub = Publisher(mosquitto.port, "alarms-pub-2")
    try:
        # A car parking (occupancy, severity info), then a leak: only the leak is an alert.
        pub.publish_all([event("p-0001", "parking", "occupancy", True, 5)])
        pub.publish_all([event("l-0001", "leak", "leak", True, 6)])
        assert webhook.wait_alert("xuhui-water", "firing", timeout=60, node="l-0001") is not None
        assert [a["labels"]["event"] for a in am.alerts()] == ["leak"]
    finally:
        pub.close()


def test_an_open_alarm_stays_open_across_kill_of_the_edge_and_of_alertmanager(
    tmp_path, mosquitto, influxdb, webhook, alertmanager, edges
):
    am, _ = alertmanager(responsibility(webhook))
    edge = _edge(tmp_path, mosquitto, influxdb, am, edges, client_id="edge-alarms-restart")
    pub = Publisher(mosquitto.port, "alarms-pub-3")
    try:
        pub.publish_all([event("m-0001", "manhole", "cover-open", True, 20, value=40.0)])
        assert webhook.wait_alert("xuhui-water", "firing", timeout=60, node="m-0001") is not None
        started = am.alerts()[0]["startsAt"]
        # Both die: Alertmanager keeps alerts in memory only, so they are gone with it.
        edge.kill()
        am.kill()
        am.start()
        assert am.alerts() == []
        edge.start()
        # The edge posts its open alarms again from its own state as it starts.
        back = wait_for(lambda: am.alerts(), 60, what="the open alarm posted again")
        assert [(a["labels"]["node"], a["labels"]["event"], a["startsAt"]) for a in back] == [
            ("m-0001", "cover-open", started)
        ]
        mark = webhook.notifications()[-1].received
        pub.publish_all([event("m-0001", "manhole", "cover-open", False, 21, value=1.0)])
        assert webhook.wait_alert("xuhui-water", "resolved", mark, timeout=60, node="m-0001") is not None
    finally:
        pub.close()
