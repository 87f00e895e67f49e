"""The edge's window (edge.window): at most four groups of the main session's messages
received and not yet acknowledged, because the broker's `max_inflight_messages` does not
bound the backlog a returning session is sent. The window alone, then against a real
Mosquitto: the broker's behaviour the window exists for, and the window holding it."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import edge.receiver as receiver
from edge.config import load_config
from edge.ingest import Inbox, MqttIngest
from edge.receiver import start_frame
from edge.service import EdgeService
from edge.window import UnackedWindow, window_of
from tests.support.edge_process import write_config
from tests.support.publisher import Publisher
from tests.support.site import topic
from tests.support.subscriber import subscribed_client
from tests.support.waiting import wait_for

BACKLOG = 600
BROKER_INFLIGHT = 100  # max_inflight_messages of the tests' Mosquitto (hil/services.py)


def _entering(window: UnackedWindow, generation: int) -> threading.Thread:
    """enter() on a thread of its own (as paho's thread calls it)."""
    t = threading.Thread(target=window.enter, args=(generation,), daemon=True)
    t.start()
    return t


# -- the window alone ------------------------------------------------------------------
def test_a_full_window_waits_for_an_acknowledgement():
    window = UnackedWindow(3, patience_s=60)
    for _ in range(3):
        window.enter(1)  # room: at once
    assert window.held == 3 and window.waiting == 0
    t = _entering(window, 1)
    wait_for(lambda: window.waiting == 1, 10, 0.01, "the fourth message to wait")
    assert t.is_alive()
    window.release(1, 2)
    t.join(10)
    assert not t.is_alive()
    assert window.held == 2  # 3 - 2 acknowledged + the one let in
    assert window.stalls == 0


def test_a_new_connection_starts_with_an_empty_window():
    window = UnackedWindow(2, patience_s=60)
    window.enter(1)
    window.enter(1)
    window.enter(2)  # the old connection's messages will never be acked on this one
    assert window.held == 1 and window.waiting == 0
    window.release(1, 2)  # an ack for the old connection frees nothing of the new one
    assert window.held == 1
    window.release(2, 1)
    assert window.held == 0


def test_a_stalled_commit_opens_the_window_until_the_next_acknowledgement():
    """paho's thread must get back to its loop to keep the connection alive: after a whole
    wait with nothing acknowledged it stops waiting, until an acknowledgement comes."""
    window = UnackedWindow(1, patience_s=0.05)
    window.enter(1)
    window.enter(1)  # nobody acknowledges: let in after the wait, over the window
    assert window.stalls == 1 and window.held == 2
    window.enter(1)  # open now: no wait
    assert window.stalls == 1 and window.held == 3
    window.patience_s = 60
    window.release(1, 1)  # the commit loop goes on: the window holds again
    t = _entering(window, 1)
    wait_for(lambda: window.waiting == 1, 10, 0.01, "the window to hold again")
    window.release(1, 2)
    t.join(10)
    assert not t.is_alive()
    assert window.stalls == 1 and window.held == 1


def test_closing_the_window_lets_the_waiting_thread_go_at_once():
    window = UnackedWindow(1, patience_s=3600)
    window.enter(1)
    t = _entering(window, 1)
    wait_for(lambda: window.waiting == 1, 10, 0.01, "a message to wait")
    window.close()
    t.join(10)
    assert not t.is_alive()
    assert window.stalls == 0


# -- who gets a window -------------------------------------------------------------------
def _config(tmp_path, port: int, client_id: str, **mqtt_extra):
    return load_config(
        write_config(
            tmp_path,
            mqtt_port=port,
            client_id=client_id,
            mqtt_extra=mqtt_extra or None,
            buffer={"commit_max_messages": 300},
            sinks=[{"name": "district", "url": "http://127.0.0.1:9", "api": "v1", "database": "d"}],
        )
    )


def test_the_main_session_gets_four_groups_and_the_events_none(tmp_path):
    cfg = _config(tmp_path / "thread", 1, "edge-window-thread")
    main, events = EdgeService(cfg).sessions
    assert main.window.limit == window_of(300) == 1200
    assert main.window.patience_s == cfg.mqtt.keepalive_s / 2
    assert events.urgent and events.window is None


def test_the_receiving_process_builds_its_session_with_the_edges_window(tmp_path, monkeypatch):
    cfg = _config(tmp_path / "process", 1, "edge-window-process", receiver="process")
    main = EdgeService(cfg).sessions[0]
    assert main.window == 1200
    frame = start_frame(cfg, main.filters, main.client_id, False, main.window)
    monkeypatch.setattr(receiver, "setup_logging", lambda level, fmt: None)  # the test's own
    session = receiver._session(frame, Inbox(), None)
    assert session.window.limit == 1200
    assert session.window.patience_s == cfg.mqtt.keepalive_s / 2


# -- against Mosquitto -------------------------------------------------------------------
def _backlog(port: int, client_id: str, pub_id: str, t: str) -> None:
    """A persistent session with BACKLOG messages queued for it while it is away."""
    c = subscribed_client(
        "127.0.0.1", port, client_id, [(topic("+", "telemetry"), 1)], lambda *a: None, clean_session=False
    )
    c.disconnect()
    c.loop_stop()
    pub = Publisher(port, pub_id)
    try:
        pub.publish_all([(t, f"m{i}".encode()) for i in range(BACKLOG)])
    finally:
        pub.close()


def test_mosquitto_sends_a_returning_session_its_backlog_past_max_inflight(_mosquitto_session):
    """What the window is for: a session back with a queue is sent more than
    max_inflight_messages unacknowledged once it acknowledges (Mosquitto 2.0.11: about
    another max_inflight_messages per PUBACK)."""
    mq = _mosquitto_session
    t = topic("win-0001", "telemetry")
    _backlog(mq.port, "window-broker-fact", "window-broker-fact-pub", t)
    got: list[int] = []
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="window-broker-fact", clean_session=False, manual_ack=True
    )

    def on_message(client, userdata, msg):
        got.append(msg.mid)
        if len(got) <= 3:
            client.ack(msg.mid, 1)  # three acknowledgements, and never another

    c.on_message = on_message
    c.connect("127.0.0.1", mq.port)
    c.loop_start()
    try:
        # 3 acked: 97 would stay within the broker's window.
        wait_for(lambda: len(got) > 2 * BROKER_INFLIGHT, 30, what="the broker to send past its window")
    finally:
        c.disconnect()
        c.loop_stop()


def test_the_window_bounds_a_returning_sessions_backlog(_mosquitto_session, tmp_path):
    """The edge's session back to a queued backlog holds at most its window of messages
    unacknowledged; each acknowledgement lets as many more in, and every message of the
    backlog arrives once, in order."""
    mq = _mosquitto_session
    t = topic("win-0002", "telemetry")
    cfg = _config(tmp_path, mq.port, "edge-window-bound")
    _backlog(mq.port, "edge-window-bound", "edge-window-bound-pub", t)
    inbox = Inbox()
    ingest = MqttIngest(cfg, inbox, window=50)
    ingest.start()
    received: list = []  # (filled in place: the waits below read it)
    most = 0
    try:
        while len(received) < BACKLOG:
            # paho's thread waits for room (nothing more can come in), or the rest came.
            wait_for(
                lambda: ingest.window.waiting == 1 or len(received) + len(inbox) == BACKLOG,
                30,
                0.01,
                "the window to fill",
            )
            taken = inbox.take(BACKLOG, 0.1)
            most = max(most, len(taken))  # none of them is acknowledged yet
            received.extend(taken)
            ingest.ack(taken)
    finally:
        ingest.stop()
    assert most == 50  # the window was full, and held
    assert [m.payload for m in received] == [f"m{i}".encode() for i in range(BACKLOG)]


@pytest.mark.slow
def test_a_stalled_commit_loop_keeps_the_connection_alive(_mosquitto_session, tmp_path):
    """Nothing is acknowledged (a commit loop stalled on a full disk): after half a
    keepalive the window opens, paho's thread goes back to its loop, and its pings keep
    the session up past the one and a half keepalives a broker waits for a silent one."""
    mq = _mosquitto_session
    t = topic("win-0003", "telemetry")
    cfg = _config(tmp_path, mq.port, "edge-window-stall", keepalive_s=5)
    _backlog(mq.port, "edge-window-stall", "edge-window-stall-pub", t)
    inbox = Inbox()
    ingest = MqttIngest(cfg, inbox, window=5)
    pongs: list[str] = []
    ingest.client.on_log = lambda client, userdata, level, buf: (
        pongs.append(buf) if "PINGRESP" in buf else None
    )
    ingest.start()
    try:
        wait_for(lambda: ingest.window.stalls == 1, 30, what="the window to open")
        # Two answered pings: more than 1.5 keepalives after the stall began.
        wait_for(lambda: len(pongs) >= 2, 60, what="two answered pings")
        assert ingest.connected.is_set() and ingest.generation == 1
        assert len(inbox) == BROKER_INFLIGHT  # what the broker sends a silent session
    finally:
        ingest.stop()
