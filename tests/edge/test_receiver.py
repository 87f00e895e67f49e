"""The receiving process (`[mqtt] receiver = "process"`): the edge's main MQTT session in a
process of its own, handing messages over in frames and acknowledging them only when the
edge has committed them, on the connection that delivered them.

Against a real Mosquitto and InfluxDB, with the edge as a real `urbansense edge run`
subprocess where a test kills it (SIGKILL of the edge and of its receiving process)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from edge.config import ConfigError, load_config
from edge.frames import FrameError, FrameReader, FrameWriter
from edge.ingest import Inbox
from edge.receiving import ReceiverSession
from tests.support.edge_process import v1_sink, write_config
from tests.support.influx_points import assert_exactly
from tests.support.metrics import metric
from tests.support.processes import children
from tests.support.publisher import Publisher, publish_paced
from tests.support.readings import counted_readings
from tests.support.receipts import ReceiptWatcher
from tests.support.site import topic
from tests.support.waiting import wait_for

PROCESS = {"receiver": "process"}


def test_frames_cross_a_pipe_whole_and_a_cut_stream_is_an_error():
    read_fd, write_fd = os.pipe()
    writer, reader = FrameWriter(write_fd), FrameReader(read_fd)
    big = [
        (i, 1, "city/v1/d/z/n/telemetry", bytes(100), 1_700_000_000_000, 1, 100, False) for i in range(5000)
    ]
    # Larger than the pipe holds: written from a thread while this one reads.
    writing = threading.Thread(
        target=lambda: (writer.write(("msgs", big, 0, 1, 2)), writer.write(("ack", 3, [1, 2, 3])))
    )
    writing.start()
    assert reader.read() == ("msgs", big, 0, 1, 2)
    assert reader.read() == ("ack", 3, [1, 2, 3])
    writing.join(10)
    os.write(write_fd, b"\x00\x00\x00\x10abc")  # a length, then less than it says
    os.close(write_fd)
    with pytest.raises(FrameError, match="ended inside a frame"):
        reader.read()
    os.close(read_fd)
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    assert FrameReader(read_fd).read() is None  # the other side gone between frames
    os.close(read_fd)


def test_a_process_receiver_needs_the_events_in_a_session_of_their_own(tmp_path):
    path = write_config(
        tmp_path,
        mqtt_port=1883,
        mqtt_extra={**PROCESS, "topics": ["city/#"]},
        sinks=[{"name": "district", "url": "http://127.0.0.1:9", "database": "d"}],
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any(p.startswith("mqtt") and "receiver" in p and "/event" in p for p in err.value.problems), (
        err.value.problems
    )


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to read its status is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _receiver_pid(edge) -> int:
    """The edge's receiving process (the one child it has), once it runs."""
    return wait_for(lambda: next(iter(children(edge.proc.pid)), None), 30, what="the receiving process")


def _taken_until(inbox: Inbox, payload: bytes) -> list:
    """What the inbox gives until a message with `payload` is among it (30 s at most)."""
    got: list = []
    deadline = time.monotonic() + 30
    while not any(m.payload == payload for m in got) and time.monotonic() < deadline:
        got += inbox.take(100, 0.5)
    return got


def test_acks_go_only_to_the_connection_that_delivered(_mosquitto_session, tmp_path):
    """A message handed over by a receiving process that then died is not acknowledged
    through the process started after it (its packet id means nothing there): the broker
    delivers it again, and the new delivery's ack is what ends it at the broker."""
    mq = _mosquitto_session
    cfg = load_config(
        write_config(
            tmp_path,
            mqtt_port=mq.port,
            client_id="edge-receiver-acks",
            mqtt_extra=PROCESS,
            sinks=[{"name": "district", "url": "http://127.0.0.1:9", "database": "d"}],
        )
    )
    filters = [topic("+", "telemetry")]
    t = topic("rcv-0001", "telemetry")
    pub = Publisher(mq.port, "edge-receiver-acks-pub")
    inbox = Inbox()
    session = ReceiverSession(cfg, inbox, filters)
    session.start()
    try:
        assert session.connected.wait(30)
        got: list = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            pub.publish_all([(t, b"one")])
            got = inbox.take(10, 0.5)
        assert got and got[0].payload == b"one"
        first = session.generation
        proc = session._proc
        os.kill(proc.pid, signal.SIGKILL)
        wait_for(
            lambda: session.connected.is_set() and session.generation not in (0, first), 30, what="restart"
        )
        assert session.restarts == 1
        assert session.ack(got) == 0  # its connection is gone: nothing acked on the new one
        ones = [m for m in _taken_until(inbox, b"one") if m.payload == b"one"]
        assert ones and all(m.generation == session.generation for m in ones)
        assert session.ack(ones) == len(ones)
        assert inbox.redelivered >= 1  # the broker marked it DUP: counted as redelivered
    finally:
        session.stop()
    assert not _alive(proc.pid)
    # Acked on the connection that delivered it: a new session finds nothing waiting.
    inbox = Inbox()
    session = ReceiverSession(cfg, inbox, filters)
    session.start()
    try:
        assert session.connected.wait(30)
        pub.publish_all([(t, b"marker")])
        seen = _taken_until(inbox, b"marker")
        assert [m.payload for m in seen] == [b"marker"]
        session.ack(seen)
    finally:
        session.stop()
        pub.close()


@pytest.mark.slow
def test_kill_9_of_the_edge_and_of_its_receiving_process_loses_and_doubles_nothing(
    mosquitto, influxdb, tmp_path, edges
):
    db = "receiver_kill"
    config = write_config(
        tmp_path,
        mqtt_port=mosquitto.port,
        client_id="edge-receiver-kill",
        mqtt_extra=PROCESS,
        metrics=True,
        sinks=[v1_sink("district", influxdb, db)],
    )
    watcher = ReceiptWatcher(mosquitto.port, "receiver-kill-receipts", retained=False)
    edge = edges(config).start()
    n = 3000
    msgs = counted_readings(n, prefix="rk")
    pub = Publisher(mosquitto.port, "receiver-kill-publisher")
    rng = random.Random(11)
    orphans = []
    try:
        sender = publish_paced(pub, msgs, per_second=600)
        for step in range(4):
            time.sleep(rng.uniform(0.4, 0.9))
            receiver = _receiver_pid(edge)
            if step % 2 == 0:
                os.kill(receiver, signal.SIGKILL)  # the edge starts another
                wait_for(lambda r=receiver: _receiver_pid(edge) != r, 30, what="another receiving process")
            else:
                edge.kill()  # SIGKILL of the edge: its receiving process must go too
                orphans.append(receiver)
                wait_for(
                    lambda r=receiver: not _alive(r), 30, what="the receiving process to end with the edge"
                )
                edge.start()
        sender.join(120)
        assert not sender.is_alive() and sender.error is None
        assert_exactly(influxdb, db, n)
        assert edge.query("SELECT count(*) FROM seen WHERE node LIKE 'rk-%'")[0][0] == n
        # Receipts went out through the receiving process: each node's last one covers all
        # its readings.
        for i in range(10):
            node = f"rk-{i:04d}"
            watcher.wait_covering(node, [(1, seq) for seq in range(n // 10)])
        text = edge.metrics_text()
        assert metric(text, "urbansense_edge_mqtt_connected", 'session="edge-receiver-kill"') == 1
        assert "starting another" in edge.log_text()
    finally:
        pub.close()
        watcher.close()
    assert not [pid for pid in orphans if _alive(pid)]
    receiver = _receiver_pid(edge)
    assert edge.stop() == 0
    assert not _alive(receiver)  # stopped with the edge, after its clean disconnect
