"""CommitLoop: validate a group of messages, commit them in one transaction, then ack.

The loop takes what MqttIngest queued, up to `commit_max_messages` or whatever arrived
within `commit_wait_ms` of the first, and in ONE transaction:
- messages over a limit or their node's rate (Screen) and messages the Validator
  rejects -> dead_letters (reason, topic, payload, arrival time);
- readings and events -> identity index (duplicates stop here) -> the timestamp index
  (a time another reading of the node has taken moves 1 ms on, marked and counted) ->
  line protocol in the outbox (raw stream; events on the event and alarm streams),
  registry and rollups;
- status and acks -> registry;
- every reading and event, new or duplicate -> the node's committed ranges.
After COMMIT returns, the whole group is acknowledged to the broker, the consumers are
woken, and each node with a reading or event in the group is owed a receipt (retained,
QoS 1; more than one if its records lie in more than 8 ranges) saying what is committed
(protocols/SPEC.md 7.1): never published before the COMMIT. Owed receipts are published
once the loop is idle, or every `receipt_window_s` while messages keep coming, each
node's newest one only (OwedReceipts). Between
groups the loop does the periodic work: rollups of closed minutes, node silence,
collecting forwarded rows, the size cap, pruning old identities and timestamps.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge import database, deadletters, identities, outbox, schema, stamps
from edge.buffer import DurableBuffer, Posted, now_ms
from edge.config import LimitsConfig
from edge.deadletters import DeadLetter
from edge.identities import Identity
from edge.ingest import Inbox, Incoming
from edge.limits import clip_topic
from edge.metrics import EdgeMetrics
from edge.models import ReadingBase
from edge.outbox import Consumers, Stream
from edge.receipts import CommittedRanges, OwedReceipts, receipt_messages
from edge.registry import NodeRegistry
from edge.rollups import RollupBook
from edge.screen import Screen
from edge.validate import (
    Accepted,
    AckAccepted,
    EventAccepted,
    Rejected,
    StatusAccepted,
    TelemetryAccepted,
    Validator,
)

log = logging.getLogger("urbansense.edge.pipeline")

# While a telemetry group is being validated, the loop looks this often for a waiting
# event, so an alarm waits for at most this many messages' work, not a whole group.
URGENT_CHECK_EVERY = 25

# With receipts owed, the loop waits this long for a message before it counts as idle and
# publishes them: in a backlog the broker's next messages follow an ack well within it.
RECEIPT_IDLE_S = 0.01

# Rows of a stream deleted per transaction while the disk is full.
COLLECT_WHEN_FULL = 8

# While the disk stays full, a reminder this often (the change itself is said at once).
REMIND_FULL_S = 60.0


@dataclass
class Group:
    """What one group commit gathers while its messages are applied."""

    new: set[Identity]  # identities the index had not seen before this group
    raw: list[str] = field(default_factory=list)  # raw lines, one outbox row per group
    duplicates: int = 0
    # New identities whose timestamp was taken: the free one they were moved to.
    moved: dict[Identity, int] = field(default_factory=dict)

    def first(self, r: ReadingBase) -> bool:
        """True for the first copy of a reading or event; a later one is a duplicate (also
        a second copy within the group)."""
        key = (r.node, r.boot, r.seq)
        if key in self.new:
            self.new.discard(key)
            return True
        self.duplicates += 1
        return False

    def stamped(self, r: ReadingBase) -> ReadingBase:
        """The record at the time it is stored under (moved off a collision, or its own)."""
        ts = self.moved.get((r.node, r.boot, r.seq))
        return r if ts is None else r.model_copy(update={"ts": ts, "moved": True})


# What an accepted message does in the group's transaction: (connection, its record, the
# message, the commit's time, the group).
Handler = Callable[[sqlite3.Connection, Any, Incoming, int, Group], None]


class CommitLoop:
    def __init__(
        self,
        buffer: DurableBuffer,
        registry: NodeRegistry,
        rollups: RollupBook,
        metrics: EdgeMetrics,
        inbox: Inbox,
        ack: Callable[[list[Incoming]], int],
        consumers: Consumers,
        *,
        max_messages: int = 1000,
        wait_ms: float = 5.0,
        dedup_ms: int = 48 * 3600_000,
        check_every_s: float = 5.0,
        want_rollups: bool = True,
        want_alarms: bool = True,
        limits: LimitsConfig | None = None,
        receipt_window_s: float = 0.5,
    ) -> None:
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
        # Refused messages: a sample per node stored whole, the rest counted.
        self.dead_letters = deadletters.Sampler()
        # What an accepted message does, by its record type (one per channel).
        self.handlers: dict[type, Handler] = {
            TelemetryAccepted: self._telemetry,
            EventAccepted: self._event,
            StatusAccepted: self._status,
            AckAccepted: self._ack,
        }
        self.committed = CommittedRanges()
        self.stamps = stamps.TimestampIndex()
        # Publishes receipts [(topic, payload)], retained QoS 1; None: receipts are off.
        self.publish_receipts_to: Callable[[list[tuple[str, bytes]]], object] | None = None
        self.owed = OwedReceipts()  # committed, not yet published
        self.receipt_window_s = receipt_window_s
        self.conn = buffer.connect()
        self._next_tick = 0.0
        self._next_prune = 0.0
        self._next_silence = 0.0
        self.watch: Callable[[], None] | None = None  # called once a second (thread health)
        # Full-disk mode: since when (monotonic), None while there is room.
        self.full_since: float | None = None
        self._no_reserve_said = False
        self._full_error: sqlite3.Error | None = None
        self._needed = 0  # bytes of WAL the group that found the disk full had taken
        self._next_reminder = 0.0  # full-disk mode: when to remind (0: not yet started)

    # -- the loop -----------------------------------------------------------------------
    def prepare(self) -> None:
        """Cursors for every configured consumer exist before any consumer starts."""
        with database.transaction(self.conn):
            outbox.keep_cursors(self.conn, self.consumers)
        self.committed.load(self.conn)
        self._keep_reserve()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.full_since is not None:
                self._wait_for_room(stop)
                continue
            # Events (the urgent lane) come first and never wait for company.
            batch = self.inbox.take(self.max_messages, RECEIPT_IDLE_S if self.owed else 0.2, self.wait_s)
            if batch and not self.commit(batch):
                continue  # the disk is full: the mode above takes over
            if self.owed and (not batch or time.monotonic() - self.owed.since >= self.receipt_window_s):
                self.publish_receipts()
            self.tick()
        self.publish_receipts()  # what the last commits owe (the sessions are still up)
        self.tick(force=True)  # store the consumers' last progress

    # -- one group commit -------------------------------------------------------------------
    def commit(self, batch: list[Incoming]) -> bool:
        """Commit a group and acknowledge it. False when the disk is full: nothing of the
        group is stored or acknowledged, it waits in the inbox, and the loop goes into
        its full-disk mode (the group is committed again once there is room)."""
        if self._try_commit(batch):
            # The cap is kept after every commit too: a second of commits can be a lot of
            # WAL. (Outside the group: it is committed and acknowledged whatever this does.)
            self._cap()
            return self.full_since is None
        self._disk_full(self._full_error)
        return False

    def _try_commit(self, batch: list[Incoming]) -> bool:
        """The group committed: True. The disk full: False, with the group back in the
        inbox and the stages' memory back to what is stored."""
        try:
            self._commit(batch)
            return True
        except sqlite3.Error as err:
            if not database.is_disk_full(err):
                raise
            self._full_error = err
            # What the WAL had grown to when the room ran out: what a group takes there,
            # and so the room to wait for before taking messages again.
            self._needed = database.wal_bytes(self.buffer.path)
            self._rolled_back()
            self.inbox.put_back(batch)
            self.buffer.release_reserve()
            return False

    def _room(self) -> int:
        """Bytes a commit can take: free on the file system, and free pages in the file."""
        disk = os.statvfs(self.buffer.path.parent)
        return disk.f_bavail * disk.f_frsize + database.free_bytes(self.conn)

    def _commit(self, batch: list[Incoming]) -> None:
        conn = self.conn
        now = now_ms()
        invalid: list[str] = []
        throttled: list[str] = []
        channels: list[str] = []
        leftover: list[Incoming] = []
        posted: Posted = ({}, [])
        try:
            conn.execute("BEGIN IMMEDIATE")
            accepted: list[tuple[Incoming, Accepted]] = []
            self._batch_kinds.clear()
            for i, m in enumerate(batch):
                if i and i % URGENT_CHECK_EVERY == 0 and self.inbox.urgent_waiting():
                    # An event arrived: commit what is done now, the rest after the event.
                    leftover = batch[i:]
                    batch = batch[:i]
                    break
                size = m.size if m.size >= 0 else len(m.payload)
                screened = self.screen.check(m.topic, m.payload, size, time.monotonic(), m.retained)
                if screened is not None:
                    reason, detail, node = screened
                    self.dead_letters.add(
                        conn, DeadLetter(reason, clip_topic(m.topic), m.payload, detail, m.arrival_ms)
                    )
                    invalid.append(reason)
                    if node is not None:
                        throttled.append(node)
                    continue
                outcome = self.validator.check(m.topic, m.payload, m.arrival_ms, m.decoded)
                if isinstance(outcome, Rejected):
                    self.dead_letters.add(
                        conn, DeadLetter(outcome.reason, m.topic, m.payload, outcome.detail, m.arrival_ms)
                    )
                    invalid.append(outcome.reason)
                    continue
                node, kind = outcome.sender
                self._batch_kinds.setdefault(node, kind)
                channels.append(outcome.channel)
                accepted.append((m, outcome))
            # One statement records every identity of the group and says which are new.
            group = Group(
                identities.first_times(
                    conn,
                    [
                        (r.node, r.boot, r.seq, m.arrival_ms)
                        for m, outcome in accepted
                        for r in outcome.identified
                    ],
                )
            )
            self._claim_times(conn, accepted, group, now)
            for m, outcome in accepted:
                self.handlers[type(outcome)](conn, outcome, m, now, group)
                for r in outcome.identified:
                    self.committed.add(r.district, r.zone, r.node, r.boot, r.seq)
            owed = self.committed.flush(conn)
            outbox.append(conn, Stream.RAW, group.raw, now)
            posted = self.buffer.apply_posted(conn)
            if self.want_rollups:
                self.rollups.flush(conn)
            outbox.append(conn, Stream.HEALTH, self.registry.flush(conn, now), now)
            conn.execute("COMMIT")
        except BaseException:
            # Not after a statement SQLite already rolled back (database.transaction).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.buffer.repost(posted)
            raise
        if leftover:
            self.inbox.put_back(leftover)
        self.ack(batch)
        self.buffer.notify()
        self.metrics.committed(len(batch), channels, invalid, group.duplicates, len(group.raw), throttled)
        if group.moved:
            self.metrics.ts_collisions.inc(len(group.moved))
        if owed and self.publish_receipts_to is not None:
            self.owed.add(owed, time.monotonic())

    def publish_receipts(self) -> None:
        """Publish the receipts owed, each made now: after the commits that owe them.
        A window's worth can be hundreds: an event arriving meanwhile is committed
        first, and the rest stay owed, due at once."""
        if not self.owed or self.publish_receipts_to is None:
            return
        owed = list(self.owed.take().items())
        sent = 0
        for start in range(0, len(owed), URGENT_CHECK_EVERY):
            if start and self.inbox.urgent_waiting():
                self.owed.add(dict(owed[start:]), time.monotonic() - self.receipt_window_s)
                break
            messages = receipt_messages(dict(owed[start : start + URGENT_CHECK_EVERY]), now_ms())
            self.publish_receipts_to(messages)
            sent += len(messages)
        self.metrics.receipts.inc(sent)

    def _claim_times(
        self, conn: sqlite3.Connection, accepted: list[tuple[Incoming, Accepted]], group: Group, now: int
    ) -> None:
        """Claim the timestamp of every new reading and event of the group; those taken
        by another identity go to group.moved. Within the group the later in (boot, seq)
        order moves, so records are claimed in that order."""
        fresh: dict[Identity, ReadingBase] = {}
        for _, outcome in accepted:
            for r in outcome.identified:
                key = (r.node, r.boot, r.seq)
                if key in group.new and key not in fresh:
                    fresh[key] = r
        order = sorted(fresh)
        points = [(key[0], schema.series_of(fresh[key]), fresh[key].ts) for key in order]
        for key, point, ts in zip(order, points, self.stamps.claim(conn, points, now)):
            if ts != point[2]:
                group.moved[key] = ts

    # -- the handlers, one per record type ----------------------------------------------------
    def _telemetry(
        self, conn: sqlite3.Connection, accepted: TelemetryAccepted, m: Incoming, now: int, group: Group
    ) -> None:
        live = len(accepted.readings) == 1  # a batch is a node replaying its queue
        # Lines the receiving process made (edge.receiver): right unless a time moved.
        lines = m.lines
        for i, r in enumerate(accepted.readings):
            if not group.first(r):
                continue
            stored = group.stamped(r)
            group.raw.append(lines[i] if lines is not None and stored is r else schema.reading_line(stored))
            self.registry.on_reading(stored)
            self.registry.on_time(r.node, estimated=stored.time_estimated, moved=stored.moved)
            if live and r.time_source == "node":
                self.registry.on_clock(r.node, r.ts, r.arrival_ms)
            if self.want_rollups:
                self.rollups.add(conn, stored, now)

    def _event(
        self, conn: sqlite3.Connection, accepted: EventAccepted, m: Incoming, now: int, group: Group
    ) -> None:
        e = accepted.event
        if not group.first(e):
            return
        stored = group.stamped(e)
        alarm = accepted.alarm
        if stored.moved:
            # The alarm carries the time the event is stored under.
            alarm = json.dumps({**json.loads(alarm), "ts": stored.ts}, separators=(",", ":"))
        outbox.append(conn, Stream.EVENT, [schema.event_line(stored)], m.arrival_ms)
        if self.want_alarms:
            outbox.append(conn, Stream.ALARM, [alarm], m.arrival_ms, topic=accepted.alarm_topic)
        self.registry.on_event(stored)
        self.registry.on_time(e.node, estimated=stored.time_estimated, moved=stored.moved)
        if e.time_source == "node":
            self.registry.on_clock(e.node, e.ts, e.arrival_ms)

    def _status(
        self, conn: sqlite3.Connection, accepted: StatusAccepted, m: Incoming, now: int, group: Group
    ) -> None:
        s = accepted.status
        self.registry.on_status(s)
        if s.state == "online" and s.ts is not None and s.time_source == "node":
            self.registry.on_clock(s.node, s.ts, s.arrival_ms)

    def _ack(
        self, conn: sqlite3.Connection, accepted: AckAccepted, m: Incoming, now: int, group: Group
    ) -> None:
        self.registry.on_ack(accepted.ack)

    # -- periodic work ---------------------------------------------------------------------
    def tick(self, force: bool = False) -> None:
        mono = time.monotonic()
        if not force and mono < self._next_tick:
            return
        self._next_tick = mono + 1.0
        if self.watch is not None:
            self.watch()
        try:
            self._maintain(mono, force)
        except sqlite3.Error as err:
            if not database.is_disk_full(err):
                raise
            self._rolled_back()
            self._disk_full(err)

    def _maintain(self, mono: float, force: bool) -> None:
        conn = self.conn
        now = now_ms()
        posted: Posted = ({}, [])
        try:
            with database.transaction(conn):
                if force or mono >= self._next_silence:
                    self._next_silence = mono + self.check_every_s
                    self.registry.check_silence(now)
                posted = self.buffer.apply_posted(conn)
                if self.want_rollups:
                    outbox.append(conn, Stream.ROLLUP, self.rollups.due(conn, now), now)
                outbox.append(conn, Stream.HEALTH, self.registry.flush(conn, now, full=True), now)
                outbox.collect(conn, self.consumers)
                # Identities leave the index once older than dedup_hours: a bounded chunk
                # every second keeps pace with 20,000 readings/s without a long pause.
                identities.prune(conn, now - self.dedup_ms)
                stamps.prune(conn, now - self.dedup_ms)
                if force or mono >= self._next_prune:
                    self._next_prune = mono + 60.0
                    self.dead_letters.new_window()
                    self.buffer.prune_dead_letters(conn)
                    self.screen.forget_idle(mono)
                    if self.want_rollups:
                        self.rollups.prune(conn, now)
        except BaseException:
            self.buffer.repost(posted)
            raise
        self.buffer.notify()
        self._cap()
        if self.full_since is None:
            self._keep_reserve()

    def _cap(self) -> None:
        try:
            rows, lines = self.buffer.enforce_cap(self.conn)
        except sqlite3.Error as err:
            if not database.is_disk_full(err):
                raise
            self._disk_full(err)
            return
        if rows:
            log.warning("buffer over max_bytes: dropped the %d oldest telemetry lines", lines)
            self.metrics.dropped(lines)

    def _keep_reserve(self) -> None:
        if not self.buffer.keep_reserve() and not self._no_reserve_said:
            self._no_reserve_said = True
            log.warning(
                "buffer disk: no room for the %d-byte reserve beside %s; a full disk may stall forwarding",
                self.buffer.reserve_bytes,
                self.buffer.path,
            )

    # -- a full disk -------------------------------------------------------------------------
    def _rolled_back(self) -> None:
        """After a rolled-back transaction: what the stages hold in memory goes back to
        what is stored, so the same messages committed again count once."""
        self.registry.reload(self.conn)
        self.committed.load(self.conn)
        self.rollups.forget()
        self.stamps = stamps.TimestampIndex()
        # Its counts may name rows that were rolled back: a new window starts clean.
        self.dead_letters.new_window()

    def _disk_full(self, err: sqlite3.Error | None) -> None:
        """Go into full-disk mode (said once, when it starts): the reserve is given back
        so forwarding can store its progress and delete what it forwarded."""
        if self.full_since is not None:
            return
        self.full_since = time.monotonic()
        self.buffer.release_reserve()
        self.metrics.disk_full.set(1)
        self.metrics.disk_full_episodes.inc()
        log.error(
            "buffer disk full at %s (%s): taking no new messages, %d held unacknowledged and "
            "the rest waiting at the broker; still forwarding the %d lines held; resuming by "
            "itself when there is room",
            self.buffer.path,
            err,
            len(self.inbox),
            self._lines_held(),
        )

    def _still_full(self, why: str) -> None:
        """A reminder while the disk stays full (every REMIND_FULL_S), with what holds it."""
        mono = time.monotonic()
        if mono < self._next_reminder:
            return
        first = self._next_reminder == 0.0
        self._next_reminder = mono + REMIND_FULL_S
        if first:
            return  # the line that started the mode has just said it
        log.warning(
            "buffer disk still full after %.0f s: %s; %d lines held, %d messages waiting here, "
            "database %d bytes, WAL %d bytes",
            mono - (self.full_since or mono),
            why,
            self._lines_held(),
            len(self.inbox),
            database.database_bytes(self.buffer.path),
            database.wal_bytes(self.buffer.path),
        )

    def _lines_held(self) -> int:
        return sum(outbox.pending(self.conn, stream, 0)[1] for stream in Stream)

    def _wait_for_room(self, stop: threading.Event) -> None:
        """One step of full-disk mode (about a second): store the consumers' progress,
        delete what every consumer has passed, give the pages back; once the reserve can
        be made again (or the file has room inside), commit what waits, and leave the
        mode if that works."""
        stop.wait(1.0)
        if self.watch is not None:
            self.watch()
        conn = self.conn
        posted: Posted = ({}, [])
        try:
            # The consumers' progress first: its few pages fit in the WAL file as it is
            # (the failed group's frames are overwritten); then the rows every consumer
            # has passed are deleted a few at a time, each step checkpointed, so no one
            # transaction needs more room than is left.
            with database.transaction(conn):
                posted = self.buffer.apply_posted(conn)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and not stop.is_set():
                with database.transaction(conn):
                    deleted = outbox.collect(conn, self.consumers, limit=COLLECT_WHEN_FULL)
                self.buffer.give_back(conn, self.buffer.reserve_bytes)
                if not deleted:
                    break
            self.buffer.notify()
        except sqlite3.Error as err:
            self.buffer.repost(posted)
            if not database.is_disk_full(err):
                raise
            self._still_full(f"no room to store the forwarders' progress ({err})")
        try:
            # Then the WAL into the database (the reserve's room holds it) and the free
            # pages back to the file system.
            self.buffer.give_back(conn, self.buffer.reserve_bytes)
        except sqlite3.Error as err:
            if not database.is_disk_full(err):
                raise
            self._still_full(f"no room to checkpoint the WAL ({err})")
            return
        # Room again: for the reserve, and for a WAL's worth of new messages. (The
        # reserve is not made before: it would take the room the steps above need.)
        wanted = self.buffer.reserve_bytes + max(self.buffer.wal_bytes_max, self._needed)
        room = self._room()
        if stop.is_set() or room < wanted or not self.buffer.keep_reserve():
            self._still_full(f"{room} bytes free, waiting for {wanted}")
            return
        batch = self.inbox.take(self.max_messages, 0.0)
        if batch and not self._try_commit(batch):
            return  # still full: the mode goes on, not said again
        since, self.full_since = self.full_since or time.monotonic(), None
        self._next_reminder = 0.0
        self.metrics.disk_full.set(0)
        log.warning(
            "buffer disk has room again after %.0f s: taking messages again (%d lines held)",
            time.monotonic() - since,
            self._lines_held(),
        )

    def close(self) -> None:
        self.conn.close()
