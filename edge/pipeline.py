"""CommitLoop: validate a group of messages, commit them in one transaction, then ack.

The loop takes what MqttIngest queued, up to `commit_max_messages` or whatever arrived
within `commit_wait_ms` of the first, and in ONE transaction:
- messages over a limit or their node's rate (Screen) and messages the Validator
  rejects -> dead_letters (reason, topic, payload, arrival time);
- readings and events -> identity index (duplicates stop here) -> line protocol in the
  outbox (raw stream; events on the event and alarm streams), registry and rollups;
- status and acks -> registry.
After COMMIT returns, the whole group is acknowledged to the broker and the consumers are
woken. Between groups the loop does the periodic work: rollups of closed minutes, node
silence, collecting forwarded rows, the size cap, pruning old identities.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from typing import Callable

from edge import schema
from edge.buffer import ALARM, EVENT, HEALTH, RAW, ROLLUP, DurableBuffer, now_ms
from edge.config import LimitsConfig
from edge.ingest import Inbox, Incoming
from edge.limits import clip_topic
from edge.metrics import EdgeMetrics
from edge.registry import NodeRegistry
from edge.rollups import RollupBook
from edge.screen import Screen
from edge.validate import Accepted, Validator
from protocols.topics import ACK, EVENT as EVENT_CHANNEL, STATUS, TELEMETRY, alarm_topic

log = logging.getLogger("urbansense.edge.pipeline")

# While a telemetry group is being validated, the loop looks this often for a waiting
# event, so an alarm waits for at most this many messages' work, not a whole group.
URGENT_CHECK_EVERY = 25


class CommitLoop:
    def __init__(self, buffer: DurableBuffer, registry: NodeRegistry, rollups: RollupBook,
                 metrics: EdgeMetrics, inbox: Inbox,
                 ack: Callable[[list[Incoming]], int], consumers: dict[int, list[str]], *,
                 max_messages: int = 500, wait_ms: float = 5.0, dedup_ms: int = 48 * 3600_000,
                 check_every_s: float = 5.0, want_rollups: bool = True,
                 want_alarms: bool = True, limits: LimitsConfig | None = None) -> None:
        self.buffer = buffer
        self.registry = registry
        self.rollups = rollups
        self.metrics = metrics
        self.inbox = inbox
        self.ack = ack
        self.consumers = consumers
        self.max_messages = max_messages
        self.wait_s = wait_ms / 1000.0
        self.dedup_ms = dedup_ms
        self.check_every_s = check_every_s
        self.want_rollups = want_rollups
        self.want_alarms = want_alarms
        # Kinds first seen earlier in the group being validated count as known too.
        self._batch_kinds: dict[str, str] = {}
        self.validator = Validator(lambda node: registry.kind_of(node) or self._batch_kinds.get(node))
        self.screen = Screen(limits or LimitsConfig(), registry)
        self.conn = buffer.connect()
        self._next_tick = 0.0
        self._next_prune = 0.0
        self._next_silence = 0.0
        self.watch: Callable[[], None] | None = None   # called once a second (thread health)
        self._qos0_reported = 0
        self._redelivered_reported = 0

    # -- the loop -----------------------------------------------------------------------
    def prepare(self) -> None:
        """Cursors for every configured consumer exist before any consumer starts."""
        self.conn.execute("BEGIN IMMEDIATE")
        self.buffer.drop_unknown_consumers(self.conn, self.consumers)
        self.conn.execute("COMMIT")

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            batch = self._gather(stop)
            if batch:
                self.commit(batch)
            self.tick()
        self.tick(force=True)       # store the consumers' last progress

    def _gather(self, stop: threading.Event) -> list[Incoming]:
        # Events (the urgent lane) come first and never wait for company.
        return self.inbox.take(self.max_messages, 0.2, self.wait_s)

    # -- one group commit -------------------------------------------------------------------
    def commit(self, batch: list[Incoming]) -> None:
        conn = self.conn
        now = now_ms()
        counts = {"dup": 0, "lines": 0}
        invalid: list[str] = []
        throttled: list[str] = []
        channels: list[str] = []
        leftover: list[Incoming] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            raw: list[str] = []
            accepted: list[tuple[Incoming, Accepted]] = []
            self._batch_kinds.clear()
            for i, m in enumerate(batch):
                if i and i % URGENT_CHECK_EVERY == 0 and self.inbox.urgent_waiting():
                    # An event arrived: commit what is done now, the rest after the event.
                    leftover = batch[i:]
                    batch = batch[:i]
                    break
                size = m.size if m.size >= 0 else len(m.payload)
                screened = self.screen.check(m.topic, m.payload, size, time.monotonic())
                if screened is not None:
                    reason, detail, node = screened
                    self.buffer.dead_letter(conn, reason, clip_topic(m.topic), m.payload,
                                            detail, m.arrival_ms)
                    invalid.append(reason)
                    if node is not None:
                        throttled.append(node)
                    continue
                outcome = self.validator.check(m.topic, m.payload, m.arrival_ms)
                if not isinstance(outcome, Accepted):
                    self.buffer.dead_letter(conn, outcome.reason, m.topic, m.payload,
                                            outcome.detail, m.arrival_ms)
                    invalid.append(outcome.reason)
                    continue
                self._batch_kinds.setdefault(outcome.message["node"], outcome.message["kind"])
                channels.append(outcome.channel)
                accepted.append((m, outcome))
            # One statement records every identity of the group and says which are new.
            identities = []
            for m, outcome in accepted:
                if outcome.channel in (TELEMETRY, EVENT_CHANNEL):
                    identities.extend((r.node, r.boot, r.seq, m.arrival_ms) for r in outcome.records)
            new = self.buffer.first_times(conn, identities)
            for m, outcome in accepted:
                self._apply(conn, outcome, m, now, raw, counts, new)
            self.buffer.append(conn, RAW, raw, now)
            self.buffer.apply_posted(conn)
            if self.want_rollups:
                self.rollups.flush(conn)
            self.buffer.append(conn, HEALTH, self.registry.flush(conn, now), now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if leftover:
            self.inbox.put_back(leftover)
        self.ack(batch)
        self.buffer.notify()
        self.metrics.committed(len(batch), channels, invalid, counts["dup"], len(raw), throttled)

    def _apply(self, conn: sqlite3.Connection, outcome: Accepted, m: Incoming, now: int,
               raw: list[str], counts: dict, new: set) -> None:
        channel = outcome.channel
        if channel == TELEMETRY:
            for r in outcome.records:
                key = (r.node, r.boot, r.seq)
                if key not in new:
                    counts["dup"] += 1
                    continue
                new.discard(key)        # a second copy in the same group is a duplicate
                raw.append(schema.reading_line(r))
                self.registry.on_reading(r)
                if self.want_rollups:
                    self.rollups.add(conn, r, now)
        elif channel == EVENT_CHANNEL:
            e = outcome.records[0]
            key = (e.node, e.boot, e.seq)
            if key not in new:
                counts["dup"] += 1
                return
            new.discard(key)
            self.buffer.append(conn, EVENT, [schema.event_line(e)], m.arrival_ms)
            if self.want_alarms:
                msg = outcome.message
                self.buffer.append(conn, ALARM, [json.dumps(msg, separators=(",", ":"))],
                                   m.arrival_ms, topic=alarm_topic(msg["district"], msg["zone"],
                                                                   msg["node"], msg["event"]))
            self.registry.on_event(e)
        elif channel == STATUS:
            self.registry.on_status(outcome.records[0])
        elif channel == ACK:
            self.registry.on_ack(outcome.records[0])

    # -- periodic work ---------------------------------------------------------------------
    def tick(self, force: bool = False) -> None:
        mono = time.monotonic()
        if not force and mono < self._next_tick:
            return
        self._next_tick = mono + 1.0
        if self.watch is not None:
            self.watch()
        dropped = self.inbox.qos0_dropped
        if dropped > self._qos0_reported:
            log.warning("inbox full: dropped %d QoS 0 messages", dropped - self._qos0_reported)
            self.metrics.qos0_dropped.inc(dropped - self._qos0_reported)
            self._qos0_reported = dropped
        redelivered = self.inbox.redelivered
        if redelivered > self._redelivered_reported:
            self.metrics.redelivered.inc(redelivered - self._redelivered_reported)
            self._redelivered_reported = redelivered
        conn = self.conn
        now = now_ms()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if force or mono >= self._next_silence:
                self._next_silence = mono + self.check_every_s
                self.registry.check_silence(now)
            self.buffer.apply_posted(conn)
            if self.want_rollups:
                self.buffer.append(conn, ROLLUP, self.rollups.due(conn, now), now)
            self.buffer.append(conn, HEALTH, self.registry.flush(conn, now, full=True), now)
            self.buffer.collect(conn, self.consumers)
            # Identities leave the index once older than dedup_hours: a bounded chunk every
            # second keeps pace with 20,000 readings/s without a long pause.
            self.buffer.prune_seen(conn, now - self.dedup_ms)
            if force or mono >= self._next_prune:
                self._next_prune = mono + 60.0
                self.buffer.prune_dead_letters(conn)
                self.screen.forget_idle(mono)
                if self.want_rollups:
                    self.rollups.prune(conn, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.buffer.notify()
        rows, lines = self.buffer.enforce_cap(conn)
        if rows:
            log.warning("buffer over max_bytes: dropped the %d oldest telemetry lines", lines)
            self.metrics.dropped(lines)

    def close(self) -> None:
        self.conn.close()
