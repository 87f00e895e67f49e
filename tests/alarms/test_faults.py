"""Faults on the way from the edge to the institution: Alertmanager stopped or killed -9
while an alarm is raised, an SMTP server refusing the mail, a flood of alarms from one
zone. Every count is exact and every wait is for a condition."""

from __future__ import annotations

import pytest

from tests.support.dispatch import dispatch_edge_config, event, responsibility
from tests.support.metrics import metric
from tests.support.publisher import Publisher
from tests.support.waiting import wait_for


def _edge(tmp_path, mosquitto, influxdb, am, edges, client_id):
    config = dispatch_edge_config(tmp_path / "edge", mosquitto.port, influxdb, am, client_id)
    return edges(config).start()


def _value(edge, name: str, labels: str = "") -> float:
    return metric(edge.metrics_text(), name, labels) or 0.0


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_alertmanager_down_during_an_alarm_gets_it_once_when_back(
    how, tmp_path, mosquitto, influxdb, webhook, alertmanager, edges
):
    am, _ = alertmanager(responsibility(webhook))
    edge = _edge(tmp_path, mosquitto, influxdb, am, edges, f"edge-am-{how}")
    pub = Publisher(mosquitto.port, f"am-down-{how}")
    try:
        am.stop() if how == "stop" else am.kill()
        pub.publish_all([event("l-0007", "leak", "leak", True, 3)])
        # Nothing is lost meanwhile, and the metrics say so: failed posts, one alarm not
        # yet delivered, a backlog on the alertmanager cursor, Alertmanager down.
        wait_for(
            lambda: _value(edge, "urbansense_edge_alertmanager_posts_total", 'outcome="failed"') >= 2,
            60,
            what="failed posts counted",
        )
        text = edge.metrics_text()
        assert metric(text, "urbansense_edge_alertmanager_undelivered_alarms") == 1
        assert metric(text, "urbansense_edge_sink_pending_lines", 'sink="alertmanager"') == 1
        assert metric(text, "urbansense_edge_alertmanager_up") == 0
        assert webhook.notifications() == []

        am.start()
        told = webhook.wait_alert("xuhui-water", "firing", timeout=60, node="l-0007")
        assert told is not None
        pub.publish_all([event("l-0007", "leak", "leak", False, 4)])
        assert webhook.wait_alert("xuhui-water", "resolved", told.received, timeout=60, node="l-0007")
        # Exactly once, as one alert: one firing notification holding it, one resolution.
        firing = [n for n in webhook.notifications() if n.alerts_matching("firing", node="l-0007")]
        assert len(firing) == 1 and len(firing[0].alerts) == 1
        assert webhook.count_alerts("xuhui-water", "resolved", node="l-0007") == 1
        text = edge.metrics_text()
        assert metric(text, "urbansense_edge_alertmanager_undelivered_alarms") == 0
        assert metric(text, "urbansense_edge_sink_pending_lines", 'sink="alertmanager"') == 0
        assert metric(text, "urbansense_edge_alertmanager_alerts_total", 'state="firing"') == 1
    finally:
        pub.close()


def test_an_alarm_raised_and_cleared_while_alertmanager_is_down_is_told_then_resolved(
    tmp_path, mosquitto, influxdb, webhook, alertmanager, edges
):
    am, _ = alertmanager(responsibility(webhook))
    edge = _edge(tmp_path, mosquitto, influxdb, am, edges, "edge-am-blip")
    pub = Publisher(mosquitto.port, "am-blip")
    try:
        am.kill()
        pub.publish_all([event("m-0009", "manhole", "h2s", True, 7, value=25.0)])
        pub.publish_all([event("m-0009", "manhole", "h2s", False, 8, value=2.0)])
        wait_for(
            lambda: _value(edge, "urbansense_edge_alertmanager_posts_total", 'outcome="failed"') >= 1,
            60,
            what="a failed post",
        )
        am.start()
        # Alertmanager tells nobody of the resolution of an alert it never notified: the
        # edge posts the cleared alarm firing first, then its resolution.
        told = webhook.wait_alert("xuhui-water", "firing", timeout=60, node="m-0009")
        assert told is not None
        assert webhook.wait_alert("xuhui-water", "resolved", told.received, timeout=60, node="m-0009")
        assert webhook.count_alerts("xuhui-water", "firing", node="m-0009") == 1
    finally:
        pub.close()


def test_smtp_server_refusing_shows_in_alertmanagers_and_the_edges_metrics(
    tmp_path, mosquitto, influxdb, webhook, smtp, alertmanager, edges
):
    am, _ = alertmanager(responsibility(webhook, smtp))
    edge = _edge(tmp_path, mosquitto, influxdb, am, edges, "edge-am-smtp")
    pub = Publisher(mosquitto.port, "am-smtp")
    try:
        # An air alarm in xuhui is the city duty officer's (the default): webhook and email.
        pub.publish_all([event("a-0001", "air", "pm25", True, 1, value=180.0)])
        mails = wait_for(smtp.received, 60, what="the alarm's mail")
        assert mails[0].recipients == ["duty@city.example"]
        assert "FIRING" in mails[0].subject and "pm25" in mails[0].subject and "a-0001" in mails[0].text()

        smtp.refuse = True
        pub.publish_all([event("a-0002", "air", "no2", True, 2, value=150.0)])
        wait_for(lambda: smtp.refused >= 1, 60, what="the SMTP server to refuse a mail")

        def failed_email(text: str, name: str) -> float:
            return metric(text, name, 'integration="email"') or 0.0

        wait_for(
            lambda: failed_email(am.metrics_text(), "alertmanager_notifications_failed_total") >= 1,
            60,
            what="Alertmanager to count the failed mail",
        )
        wait_for(
            lambda: (
                failed_email(edge.metrics_text(), "urbansense_edge_alertmanager_notifications_failed_total")
                >= 1
            ),
            30,
            what="the edge to show Alertmanager's failed mail",
        )
        # The webhook of the same institution still got it.
        assert webhook.wait_alert("city-duty", "firing", timeout=60, node="a-0002") is not None
        assert len(smtp.received()) == 1
    finally:
        pub.close()


def test_a_flood_of_alarms_from_one_zone_is_grouped(
    tmp_path, mosquitto, influxdb, webhook, alertmanager, edges
):
    am, _ = alertmanager(responsibility(webhook))
    _edge(tmp_path, mosquitto, influxdb, am, edges, "edge-am-flood")
    pub = Publisher(mosquitto.port, "am-flood")
    nodes = [f"l-{i:04d}" for i in range(60)]
    try:
        pub.publish_all([event(node, "leak", "leak", True, 1) for node in nodes])

        def told_nodes() -> set[str]:
            return {
                a["labels"]["node"]
                for n in webhook.notifications("xuhui-water")
                for a in n.alerts_matching("firing")
            }

        wait_for(lambda: told_nodes() >= set(nodes), 90, what="every leak told")
        notifications = webhook.notifications("xuhui-water")
        # One group (xuhui/caohejing, leak, level 1): a handful of messages, each holding
        # many alarms, never one message per reading.
        assert {n.payload["groupLabels"]["event"] for n in notifications} == {"leak"}
        assert len(notifications) <= len(nodes) // 10, [len(n.alerts) for n in notifications]
        assert max(len(n.alerts) for n in notifications) >= 10
    finally:
        pub.close()
