"""The alarm desk and escalation against a real Alertmanager fed by a real edge:
`urbansense alarms` lists open alarms with who was told and who took them, `alarms ack`
is a silence with author and comment, and a critical alarm nobody takes goes to the
district's duty officer, then the city's, routed by Alertmanager."""

from __future__ import annotations

import json

from tests.support.cli import urbansense
from tests.support.dispatch import dispatch_edge_config, event, responsibility
from tests.support.publisher import Publisher
from tests.support.waiting import wait_for


def _alarms(resp_path) -> list[dict]:
    done = urbansense("alarms", "--config", str(resp_path), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _escalate(resp_path) -> list[dict]:
    done = urbansense("alarms", "escalate", "--config", str(resp_path), "--once", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ack_list_and_escalation(tmp_path, mosquitto, influxdb, webhook, alertmanager, edges):
    quick = {"ack_within": "1s"}
    resp = responsibility(webhook)
    for name in ("xuhui-water", "xuhui-duty"):
        resp["institutions"][name] = {**resp["institutions"][name], **quick}
    am, resp_path = alertmanager(resp)
    config = dispatch_edge_config(tmp_path / "edge", mosquitto.port, influxdb, am, "edge-desk", metrics=False)
    edges(config).start()
    pub = Publisher(mosquitto.port, "desk-pub")
    try:
        # The gas alarm first, the leak after it: the gas alarm is always the older one.
        pub.publish_all([event("m-0001", "manhole", "ch4", True, 1, value=30.0)])
        wait_for(lambda: len(am.alerts()) == 1, 60, what="the gas alarm in Alertmanager")
        pub.publish_all([event("l-0001", "leak", "leak", True, 1)])
        wait_for(lambda: len(am.alerts()) == 2, 60, what="the leak in Alertmanager")

        done = urbansense(
            "alarms", "ack", "m-0001", "ch4", "--by", "Wang Wei", "--comment", "crew on the way",
            "--config", str(resp_path),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "acknowledged by Wang Wei" in done.stdout
        listed = {a["node"]: a for a in _alarms(resp_path)}
        assert set(listed) == {"m-0001", "l-0001"}
        assert listed["m-0001"]["acked_by"] == "Wang Wei"
        assert listed["m-0001"]["ack_comment"] == "crew on the way"
        assert listed["l-0001"]["acknowledged"] is False
        assert listed["l-0001"]["told"] == ["xuhui-water"] and listed["l-0001"]["level"] == 1
        table = urbansense("alarms", "--config", str(resp_path), env={"COLUMNS": "200"})
        assert table.returncode == 0 and "Wang Wei" in table.stdout and "l-0001" in table.stdout

        # Nobody takes the leak: level 2 (xuhui's duty officer), then level 3 (the city).
        def reached(level: int) -> bool:
            _escalate(resp_path)
            return any(a["level"] >= level for a in _alarms(resp_path) if a["node"] == "l-0001")

        wait_for(lambda: reached(3), 60, interval=0.5, what="the leak to reach level 3")
        duty = webhook.wait_alert("xuhui-duty", "firing", timeout=60, node="l-0001", level="2")
        city = webhook.wait_alert("city-duty", "firing", timeout=60, node="l-0001", level="3")
        assert duty is not None and city is not None
        listed = {a["node"]: a for a in _alarms(resp_path)}
        assert listed["l-0001"]["told"] == ["xuhui-water", "xuhui-duty", "city-duty"]
        # The acknowledged gas alarm, older than the leak, never left level 1.
        _escalate(resp_path)
        assert listed["m-0001"]["level"] == 1 and listed["m-0001"]["told"] == ["xuhui-water"]
        assert webhook.count_alerts("xuhui-duty", node="m-0001") == 0
        assert webhook.count_alerts("city-duty", node="m-0001") == 0

        # The leak clears: every level gets the resolution.
        pub.publish_all([event("l-0001", "leak", "leak", False, 2)])
        wait_for(lambda: [a for a in am.alerts() if a["labels"]["level"] == "1" and a["labels"]["node"] == "l-0001"] == [], 60, what="the leak to clear")  # fmt: skip
        steps = _escalate(resp_path)
        assert sorted((s["level"], s["action"]) for s in steps if s["node"] == "l-0001") == [
            (2, "ended"),
            (3, "ended"),
        ]
        for receiver, level in (("xuhui-water", "1"), ("xuhui-duty", "2"), ("city-duty", "3")):
            got = webhook.wait_alert(receiver, "resolved", timeout=60, node="l-0001", level=level)
            assert got is not None, receiver
        # The gas alarm clears: its acknowledgement is expired, so a new one is not born silenced.
        pub.publish_all([event("m-0001", "manhole", "ch4", False, 2, value=1.0)])
        wait_for(lambda: am.alerts() == [], 60, what="every alarm cleared")
        assert [(s["node"], s["action"]) for s in _escalate(resp_path)] == [("m-0001", "ack expired")]
    finally:
        pub.close()


def test_ack_of_an_alarm_that_is_not_open_lists_the_open_ones(tmp_path, webhook, alertmanager):
    am, resp_path = alertmanager(responsibility(webhook))
    done = urbansense("alarms", "ack", "m-0404", "--by", "x", "--config", str(resp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == "urbansense: no open alarm m-0404 (open: none)"
    am.stop()
    down = urbansense("alarms", "--alertmanager", am.url)
    assert down.returncode == 1 and len(down.stderr.strip().splitlines()) == 1
    assert "cannot be reached" in down.stderr
