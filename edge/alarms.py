"""AlarmPublisher: republishes every accepted event on alarms/v1/{district}/{zone}/{node}/{event}.

It consumes the buffer's alarm stream with its own cursor, like a sink: the commit loop
wakes it right after an event is committed, it publishes at QoS 1 through the edge's
MQTT client, and moves its cursor only once the broker has acknowledged (PUBACK). So an
alarm is published at least once even across a crash; consumers deduplicate on the
payload's (node, boot, seq) if they must.
"""
from __future__ import annotations

import logging
import threading

from edge.buffer import ALARM, DurableBuffer
from edge.ingest import MqttIngest
from edge.metrics import EdgeMetrics

log = logging.getLogger("urbansense.edge.alarms")

CONSUMER = "alarms"


class AlarmPublisher(threading.Thread):
    def __init__(self, buffer: DurableBuffer, ingest: MqttIngest, metrics: EdgeMetrics,
                 stop: threading.Event, on_crash=None) -> None:
        super().__init__(name="alarms", daemon=True)
        self.buffer = buffer
        self.ingest = ingest
        self.metrics = metrics
        self.stop_event = stop
        self.on_crash = on_crash

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("alarm publisher crashed")
            if self.on_crash:
                self.on_crash()

    def _run(self) -> None:
        conn = self.buffer.connect(readonly=True)
        mark = DurableBuffer.cursor(conn, CONSUMER, ALARM)
        version = self.buffer.version
        while not self.stop_event.is_set():
            rows = self.buffer.read(conn, ALARM, mark, 200)
            if not rows:
                version = self.buffer.wait_change(version, 0.5)
                continue
            if not self.ingest.connected.wait(0.5):
                continue
            infos = [self.ingest.publish(r.topic, r.body, qos=1) for r in rows]
            done = True
            for info in infos:
                try:
                    info.wait_for_publish(timeout=5.0)
                except (RuntimeError, ValueError):
                    pass
                if not info.is_published():
                    done = False
                    break
            if not done:
                # Not acknowledged (broker gone?): publish the rows again when it is back.
                self.stop_event.wait(0.5)
                continue
            self.metrics.alarms.inc(len(rows))
            mark = rows[-1].id
            self.buffer.post_advance(CONSUMER, ALARM, mark)
        conn.close()
