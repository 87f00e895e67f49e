"""EdgeService: wires the stages together and runs them until told to stop.

    MqttIngest --queue--> CommitLoop --(SQLite: DurableBuffer)--> Forwarder x (sink, stream)
                                                             \\--> AlarmPublisher
                                                             \\--> AlertmanagerDelivery

The outbox's readers (forwarders, the alarm publisher) are StreamConsumers; the cursors
the commit loop keeps are those of the readers built here, so a new reader is one more
entry in `self.threads`.

The commit loop runs in the calling (main) thread; paho's network loop, every
forwarder and the alarm publisher run in threads of their own. `stop()` (wired to
SIGTERM and Ctrl-C by the CLI) lets the commit in hand finish: nothing is half-written,
and whatever was received but not committed is simply not acknowledged, so the broker
delivers it again next time.
"""

from __future__ import annotations

import logging
import sys
import threading

from edge import collector, outbox
from edge.alarms import AlarmPublisher
from edge.alertmanager import CONSUMER as ALERTMANAGER
from edge.alertmanager import AlertmanagerCollector, AlertmanagerDelivery
from edge.buffer import DurableBuffer
from edge.config import EdgeConfig
from edge.consumer import StreamConsumer, cursors_of
from edge.forward import Forwarder
from edge.ingest import Inbox, MqttIngest, split_filters
from edge.lock import BufferLock, EdgeStartError
from edge.metrics import BufferCollector, EdgeMetrics, InboxCollector, MqttCollector
from edge.outbox import Stream
from edge.pipeline import CommitLoop
from edge.receiving import ReceiverSession
from edge.registry import NodeRegistry
from edge.rollups import RollupBook
from edge.sinkhealth import SinkHealth
from edge.window import window_of

log = logging.getLogger("urbansense.edge")


def sink_streams(data: str) -> tuple[Stream, ...]:
    """The buffer streams a sink with `data = raw|rollup` consumes."""
    return (Stream.RAW if data == "raw" else Stream.ROLLUP, Stream.HEALTH, Stream.EVENT)


class EdgeService:
    def __init__(self, cfg: EdgeConfig) -> None:
        self.cfg = cfg
        self.stop_event = threading.Event()
        self.failed = threading.Event()
        self.metrics = EdgeMetrics()
        self.metrics_port: int | None = None
        # First of all: a second edge on this buffer stops here, touching nothing.
        self.lock = BufferLock(cfg.buffer_path)
        self.lock.acquire()
        b = cfg.buffer
        self.buffer = DurableBuffer(
            cfg.buffer_path,
            max_bytes=b.max_bytes,
            synchronous=b.synchronous,
            dead_letter_max_rows=b.dead_letter_max_rows,
            reserve_bytes=b.reserve_bytes,
        )
        self.registry = NodeRegistry(
            offline_after_intervals=cfg.health.offline_after_intervals,
            write_every_s=cfg.health.write_every_s,
            max_clock_offset_s=cfg.clock.max_offset_s,
        )
        worker = cfg.mqtt.client_id if cfg.mqtt.shared_group else None
        self.rollups = RollupBook(delay_s=cfg.rollup.delay_s, keep_hours=cfg.rollup.keep_hours, worker=worker)
        self.inbox = Inbox()
        self.metrics.add_collector(InboxCollector(self.inbox))
        event_filters, other_filters = split_filters(cfg.subscriptions())
        self.sessions: list[MqttIngest | ReceiverSession] = []
        if other_filters:
            receive = ReceiverSession if cfg.mqtt.receiver == "process" else MqttIngest
            self.sessions.append(
                receive(cfg, self.inbox, other_filters, window=window_of(b.commit_max_messages))
            )
        if event_filters:
            self.sessions.append(
                MqttIngest(
                    cfg, self.inbox, event_filters, client_id=f"{cfg.mqtt.client_id}-events", urgent=True
                )
            )
        # The outbox's readers, each with its cursor; started by start_background().
        self.threads: list[StreamConsumer] = []
        for sink in cfg.sink:
            health = SinkHealth(sink.name, self.metrics, self._backlog(sink.name, sink_streams(sink.data)))
            self.threads += [
                Forwarder(
                    self.buffer,
                    sink,
                    stream,
                    self.metrics,
                    self.stop_event,
                    on_crash=self._crashed,
                    health=health,
                )
                for stream in sink_streams(sink.data)
            ]
        if cfg.alarms.enabled:
            # Alarms go out through the events session when there is one.
            self.threads.append(
                AlarmPublisher(
                    self.buffer, self.sessions[-1], self.metrics, self.stop_event, on_crash=self._crashed
                )
            )
        if cfg.alertmanager.enabled:
            self.threads.append(
                AlertmanagerDelivery(
                    self.buffer,
                    cfg.alertmanager,
                    cfg.path(cfg.alertmanager.state),
                    self.metrics,
                    self.stop_event,
                    on_crash=self._crashed,
                )
            )
        consumers = cursors_of(self.threads)
        self.loop = CommitLoop(
            self.buffer,
            self.registry,
            self.rollups,
            self.metrics,
            self.inbox,
            self._ack,
            consumers,
            max_messages=b.commit_max_messages,
            wait_ms=b.commit_wait_ms,
            dedup_ms=int(b.dedup_hours * 3600_000),
            check_every_s=cfg.health.check_every_s,
            want_rollups=bool(consumers[Stream.ROLLUP]),
            want_alarms=cfg.alarms.enabled or cfg.alertmanager.enabled,
            limits=cfg.limits,
            receipt_window_s=cfg.receipts.window_ms / 1000.0,
        )
        self.metrics.add_collector(MqttCollector(self.sessions))
        if cfg.receipts.enabled and self.sessions:
            # Receipts go out through the first session, after the commits.
            self.loop.publish_receipts_to = self.sessions[0].publish_retained_all
            self.sessions[0].unlimited_outgoing()

    def _backlog(self, name: str, streams: tuple[Stream, ...]):
        """Lines a sink has not taken yet, read when a log line says it."""

        def lines() -> int:
            conn = self.buffer.connect(readonly=True)
            try:
                return outbox.backlog(conn, name, streams)[0]
            finally:
                conn.close()

        return lines

    def _ack(self, batch) -> int:
        return sum(s.ack(batch) for s in self.sessions)

    def _crashed(self) -> None:
        self.failed.set()
        self.stop_event.set()

    def stop(self) -> None:
        self.stop_event.set()

    def start_background(self) -> None:
        self.loop.prepare()
        conn = self.buffer.connect()
        try:
            self.registry.load(conn)
        finally:
            conn.close()
        if self.cfg.metrics.address:
            host, port = self.cfg.metrics.address
            sinks = {s.name: sink_streams(s.data) for s in self.cfg.sink}
            if self.cfg.alertmanager.enabled:
                sinks[ALERTMANAGER] = (Stream.ALARM,)  # its backlog and lag, like a sink's
                self.metrics.add_collector(AlertmanagerCollector(self.cfg.alertmanager.url))
            self.metrics.add_collector(BufferCollector(self.buffer.connect, sinks, self.buffer.path))
            try:
                self.metrics_port = self.metrics.serve(host, port)
            except OSError as err:
                raise EdgeStartError(
                    f"metrics: cannot listen on {host}:{port} ({err.strerror}; another edge?): "
                    'set [metrics] listen to a free port, or "" for none'
                ) from None
            log.info("metrics on http://%s:%d/metrics", host, self.metrics_port)
        for t in self.threads:
            t.start()
        for session in self.sessions:
            session.start()

    def _watch(self) -> None:
        for session in self.sessions:
            session.check()
        for t in self.threads:
            if not t.is_alive() and not self.stop_event.is_set():
                log.error("thread %s died; stopping", t.name)
                self._crashed()

    def run(self) -> int:
        """Run until stop(); returns the process exit code."""
        # The commit loop is CPU-bound; the forwarders and MQTT threads mostly wait on I/O
        # and need the GIL back quickly after each wait. A 1 ms switch interval (default
        # 5 ms) bounds what the events path waits at each step.
        sys.setswitchinterval(0.001)
        log.info(
            "edge %s/%s starting: buffer %s, sinks %s",
            self.cfg.site.district,
            self.cfg.site.zone,
            self.cfg.buffer_path,
            ", ".join(f"{s.name}({s.api},{s.data})" for s in self.cfg.sink),
        )
        try:
            self.start_background()
            collector.settle()  # all that lives as long as the edge is made by now
            self.loop.watch = self._watch
            self.loop.run(self.stop_event)
        except EdgeStartError as err:
            log.error("%s", err)
            self.failed.set()
        except Exception:
            log.exception("edge stopping on an error")
            self.failed.set()
        finally:
            self.shutdown()
        return 1 if self.failed.is_set() else 0

    def shutdown(self) -> None:
        self.stop_event.set()
        for session in self.sessions:
            try:
                session.stop()
            except Exception:
                log.exception("mqtt stop")
        for t in self.threads:
            if t.ident is not None:  # started (a refused start never starts them)
                t.join(timeout=self.cfg.sink[0].timeout_s + 5)
        try:
            self.loop.tick(force=True)  # the consumers' progress since the last commit
        except Exception:
            log.exception("final tick")
        self.metrics.close()
        self.loop.close()
        self.lock.release()
        log.info("edge stopped")
