"""AlarmPublisher: republishes every accepted event on alarms/v1/{district}/{zone}/{node}/{event}.

It consumes the buffer's alarm stream with its own cursor, like a sink (the loop is
StreamConsumer's): the commit loop wakes it right after an event is committed, it
publishes at QoS 1 through the edge's MQTT client, and moves its cursor only once the
broker has acknowledged (PUBACK). So an alarm is published at least once even across a
crash; consumers deduplicate on the payload's (node, boot, seq) if they must.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from edge.buffer import DurableBuffer
from edge.consumer import StreamConsumer
from edge.ingest import MqttIngest
from edge.metrics import EdgeMetrics
from edge.outbox import OutboxRow, Stream

CONSUMER = "alarms"


class AlarmPublisher(StreamConsumer):
    def __init__(
        self,
        buffer: DurableBuffer,
        ingest: MqttIngest,
        metrics: EdgeMetrics,
        stop: threading.Event,
        on_crash: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(buffer, CONSUMER, Stream.ALARM, stop, name="alarms", on_crash=on_crash)
        self.ingest = ingest
        self.metrics = metrics

    def deliver(self, rows: list[OutboxRow]) -> bool:
        if not self.ingest.connected.wait(0.5):
            return False
        infos = [self.ingest.publish(r.topic, r.body, qos=1) for r in rows]
        for info in infos:
            try:
                info.wait_for_publish(timeout=5.0)
            except (RuntimeError, ValueError):
                pass
            if not info.is_published():
                # Not acknowledged (broker gone?): publish the rows again when it is back.
                self.stop_event.wait(0.5)
                return False
        self.metrics.alarms.inc(len(rows))
        return True
