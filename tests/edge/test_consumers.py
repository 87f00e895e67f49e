"""The outbox's readers share one cursor loop (edge.consumer.StreamConsumer): read after
the cursor, deliver, post the advance, wait for a commit. Here on a real SQLite buffer:
a reader that only says how to deliver, and the two the edge runs, the alarm publisher
(real Mosquitto) and a forwarder (real InfluxDB 1.6), each resuming from its stored
cursor after a restart."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge import outbox
from edge.alarms import CONSUMER as ALARMS
from edge.alarms import AlarmPublisher
from edge.buffer import DurableBuffer
from edge.config import parse_config
from edge.consumer import StreamConsumer, cursors_of
from edge.forward import Forwarder
from edge.ingest import Inbox, MqttIngest
from edge.metrics import EdgeMetrics
from edge.outbox import OutboxRow, Stream
from tests.support.waiting import wait_for

T0 = 1795334340000


class Recorder(StreamConsumer):
    """A reader that says only how to deliver: it keeps the bodies, and refuses the first
    `failures` attempts."""

    def __init__(self, buffer: DurableBuffer, stop: threading.Event, failures: int = 0) -> None:
        super().__init__(buffer, "recorder", Stream.ALARM, stop, name="recorder", max_lines=2)
        self.failures = failures
        self.attempts: list[list[str]] = []
        self.delivered: list[str] = []

    def deliver(self, rows: list[OutboxRow]) -> bool:
        self.attempts.append([r.body for r in rows])
        if len(self.attempts) <= self.failures:
            return False
        self.delivered += [r.body for r in rows]
        return True


class Writer:
    """What the commit loop does for the readers: append rows, wake them, store what they
    posted. One connection, transactions of its own."""

    def __init__(self, buffer: DurableBuffer, consumers: dict) -> None:
        self.buffer = buffer
        self.conn = buffer.connect()
        self.transaction(lambda: outbox.keep_cursors(self.conn, consumers))

    def transaction(self, work) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        work()
        self.conn.execute("COMMIT")
        self.buffer.notify()

    def append(self, stream: Stream, bodies: list[str], topic: str | None = None) -> None:
        def work():
            for body in bodies:
                outbox.append(self.conn, stream, [body], T0, topic)

        self.transaction(work)

    def store_progress(self) -> None:
        self.transaction(lambda: self.buffer.apply_posted(self.conn))

    def cursor(self, consumer: str, stream: Stream) -> int:
        return outbox.cursor(self.conn, consumer, stream)

    def ids(self, stream: Stream) -> list[int]:
        return [r.id for r in outbox.read(self.conn, stream, 0, 1000)]


def run(consumer: StreamConsumer) -> StreamConsumer:
    consumer.start()
    return consumer


def stop(consumer: StreamConsumer) -> None:
    consumer.stop_event.set()
    consumer.join(30)
    assert not consumer.is_alive()


def test_a_reader_resumes_from_its_stored_cursor_after_a_restart(tmp_path):
    buf = DurableBuffer(tmp_path / "buffer.db")
    writer = Writer(buf, {Stream.ALARM: ["recorder"]})
    writer.append(Stream.ALARM, ["a", "b", "c"])
    first = run(Recorder(buf, threading.Event()))
    wait_for(lambda: first.delivered == ["a", "b", "c"], what="the first three rows")
    assert first.attempts == [["a", "b"], ["c"]]  # at most max_lines at once
    stop(first)
    writer.store_progress()
    assert writer.cursor("recorder", Stream.ALARM) == writer.ids(Stream.ALARM)[-1]
    writer.append(Stream.ALARM, ["d"])
    second = run(Recorder(buf, threading.Event()))
    wait_for(lambda: second.delivered == ["d"], what="the new row")
    stop(second)
    assert second.attempts == [["d"]]  # nothing before the cursor again


def test_an_advance_not_stored_is_delivered_again(tmp_path):
    # A reader that stops before the commit loop stored its progress (kill -9) delivers
    # the same rows again: at least once.
    buf = DurableBuffer(tmp_path / "buffer.db")
    writer = Writer(buf, {Stream.ALARM: ["recorder"]})
    writer.append(Stream.ALARM, ["a"])
    first = run(Recorder(buf, threading.Event()))
    wait_for(lambda: first.delivered == ["a"], what="a")
    stop(first)
    second = run(Recorder(buf, threading.Event()))
    wait_for(lambda: second.delivered == ["a"], what="a again")
    stop(second)


def test_a_refused_delivery_reads_the_same_rows_again(tmp_path):
    buf = DurableBuffer(tmp_path / "buffer.db")
    writer = Writer(buf, {Stream.ALARM: ["recorder"]})
    writer.append(Stream.ALARM, ["a"])
    reader = run(Recorder(buf, threading.Event(), failures=2))
    wait_for(lambda: reader.delivered == ["a"], what="a, third time lucky")
    stop(reader)
    assert reader.attempts == [["a"]] * 3


def test_cursors_of_names_every_reader_by_stream(tmp_path):
    buf = DurableBuffer(tmp_path / "buffer.db")
    readers = [Recorder(buf, threading.Event())]
    assert cursors_of(readers) == {**{s: [] for s in Stream}, Stream.ALARM: ["recorder"]}


@pytest.fixture
def alarm_watcher(mosquitto):
    got: list[mqtt.MQTTMessage] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="resume-alarm-watcher")
    sub.on_message = lambda c, u, m: got.append(m)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("alarms/v1/resume/#", qos=1)
    sub.loop_start()
    assert subscribed.wait(10)
    yield got
    sub.disconnect()
    sub.loop_stop()


def test_alarm_publisher_and_forwarder_resume_from_their_cursors(
    tmp_path, mosquitto, influxdb, alarm_watcher
):
    db = "consumer_resume"
    cfg = parse_config(
        {
            "site": {"district": "resume", "zone": "z"},
            "mqtt": {
                "port": mosquitto.port,
                "client_id": "resume-edge",
                "topics": ["city/v1/resume/z/+/event"],
            },
            "sink": [
                {
                    "name": "district",
                    "url": influxdb.url,
                    "database": db,
                    "batch_wait_ms": 20,
                    "retry_min_s": 0.05,
                    "retry_max_s": 0.5,
                }
            ],
        },
        tmp_path,
    )
    buf = DurableBuffer(tmp_path / "buffer.db")
    metrics = EdgeMetrics()
    ingest = MqttIngest(cfg, Inbox())
    ingest.start()
    writer = Writer(buf, {Stream.ALARM: [ALARMS], Stream.RAW: ["district"]})

    def alarm(n: int) -> str:
        return f'{{"n":{n}}}'

    def line(n: int) -> str:
        return f"air,district=resume,node=r-1,zone=z pm25={n}.0 {T0 + n}"

    def start_both() -> list[StreamConsumer]:
        stop_event = threading.Event()
        return [
            run(AlarmPublisher(buf, ingest, metrics, stop_event)),
            run(Forwarder(buf, cfg.sink[0], Stream.RAW, metrics, stop_event)),
        ]

    def written() -> list[float]:
        try:
            series = influxdb.query('SELECT "pm25" FROM "air" WHERE "district"=\'resume\'', db=db)
        except Exception:
            return []
        return sorted(v[1] for s in series for v in s["values"])

    try:
        # An earlier run delivered row 1 of each stream and its advance was stored.
        writer.append(Stream.ALARM, [alarm(1)], "alarms/v1/resume/z/r-1/tilt")
        writer.append(Stream.RAW, [line(1)])
        buf.post_advance(ALARMS, Stream.ALARM, writer.ids(Stream.ALARM)[0])
        buf.post_advance("district", Stream.RAW, writer.ids(Stream.RAW)[0])
        writer.store_progress()
        writer.append(Stream.ALARM, [alarm(2), alarm(3)], "alarms/v1/resume/z/r-1/tilt")
        writer.append(Stream.RAW, [line(2), line(3)])
        readers = start_both()
        # Row 1 would have come first (one publisher, in order; one write request).
        wait_for(lambda: len(alarm_watcher) >= 2, what="alarms 2 and 3")
        assert [m.payload.decode() for m in alarm_watcher] == [alarm(2), alarm(3)]
        wait_for(lambda: written() == [2.0, 3.0], what="lines 2 and 3")
        for reader in readers:
            stop(reader)
        writer.store_progress()
        assert writer.cursor(ALARMS, Stream.ALARM) == writer.ids(Stream.ALARM)[-1]
        assert writer.cursor("district", Stream.RAW) == writer.ids(Stream.RAW)[-1]
        # Restarted, each goes on from its cursor: only the new rows.
        writer.append(Stream.ALARM, [alarm(4)], "alarms/v1/resume/z/r-1/tilt")
        writer.append(Stream.RAW, [line(4)])
        readers = start_both()
        wait_for(lambda: len(alarm_watcher) >= 3, what="alarm 4")
        assert [m.payload.decode() for m in alarm_watcher] == [alarm(2), alarm(3), alarm(4)]
        wait_for(lambda: written() == [2.0, 3.0, 4.0], what="line 4")
        for reader in readers:
            stop(reader)
        sample = metrics.registry.get_sample_value
        assert sample("urbansense_edge_alarms_published_total") == 3
        assert sample("urbansense_edge_sink_written_lines_total", {"sink": "district"}) == 3
    finally:
        ingest.stop()
