"""AlertmanagerDelivery: posts the edge's alarms to Prometheus Alertmanager (v2 API), which
routes each to the institution responsible for its place and kind.

One more reader of the buffer's alarm stream, with a cursor of its own (the loop is
StreamConsumer's). For each event of the stream it keeps the alarm's state in a small
SQLite file of its own (`[alertmanager] state`), then posts the alarms that changed as
alerts to `POST /api/v2/alerts`, and moves its cursor only once Alertmanager has taken
them. So nothing is lost while Alertmanager is down: the rows stay in the buffer, the
posts are retried with exponential backoff and jitter, and the backlog shows in the
metrics (`sink_pending_lines{sink="alertmanager"}`, `alertmanager_posts_total`).

Why a state of its own: Alertmanager keeps alerts in memory, and forgets an alert whose
endsAt passes without it being posted again. An open alarm is posted with endsAt = now +
`hold_s`, and posted again every `repost_s` (and at once after the edge starts) from this
file, which survives restarts of the edge and of Alertmanager; a cleared alarm is posted
once with endsAt = its clear time (Alertmanager then sends the resolution) and forgotten
once taken. One that cleared before Alertmanager ever took it firing (Alertmanager was
down, or the alarm lasted less than group_wait) is posted firing first and resolved
`min_firing_s` later, so the institution hears of it all the same. Applying an event to the state is idempotent (the newest event of a node and
event name wins, by its time), so rows read again after a crash change nothing.

The HTTP call is a plain urllib POST: there is no maintained Python client for
Alertmanager's API, and the call is one JSON document.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from edge import database
from edge.buffer import DurableBuffer, now_ms
from edge.config import AlertmanagerConfig
from edge.consumer import StreamConsumer
from edge.deadletters import DeadLetter
from edge.metrics import EdgeMetrics
from edge.outbox import OutboxRow, Stream

log = logging.getLogger("urbansense.edge.alertmanager")

CONSUMER = "alertmanager"  # the cursor's name, and the sink label of its lag metrics
API_PATH = "/api/v2/alerts"
FIRST_LEVEL = "1"  # the escalation level an alarm starts at (ops raises it, not the edge)
P_AM = "urbansense_edge_alertmanager_"  # the metrics read from Alertmanager itself

SCHEMA = """CREATE TABLE IF NOT EXISTS alarms (
    key TEXT PRIMARY KEY,            -- node/event: one alert per node and event name
    ts_ms INTEGER NOT NULL,          -- time of the event that set this state
    starts_ms INTEGER NOT NULL,      -- raised at
    ends_ms INTEGER,                 -- cleared at (NULL while open)
    labels TEXT NOT NULL,            -- JSON
    annotations TEXT NOT NULL,       -- JSON
    posted INTEGER NOT NULL,         -- 1 once Alertmanager took this state
    firing_ms INTEGER                -- when Alertmanager first took it firing (NULL: not yet)
)"""


def iso(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, as Alertmanager's API reads it."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Alarm:
    """One node's alarm of one event name, as the edge last knew it."""

    key: str
    ts_ms: int
    starts_ms: int
    ends_ms: int | None
    labels: dict[str, str]
    annotations: dict[str, str]
    posted: bool
    firing_ms: int | None = None

    @property
    def open(self) -> bool:
        return self.ends_ms is None

    def resolving(self, now: int, min_firing_ms: int) -> bool:
        """Whether to post the resolution now: cleared, and firing in Alertmanager for at
        least `min_firing_ms`. An alarm that cleared before Alertmanager took it firing
        (down meanwhile, or a blip shorter than group_wait) is posted firing first: a
        resolution of an alert it never notified, Alertmanager tells nobody of."""
        return (
            self.ends_ms is not None and self.firing_ms is not None and now >= self.firing_ms + min_firing_ms
        )

    def alert(self, now: int, hold_ms: int, link: str, min_firing_ms: int = 0) -> dict:
        """The alert document of Alertmanager's v2 API."""
        ends = self.ends_ms if self.resolving(now, min_firing_ms) else now + hold_ms
        doc = {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": iso(self.starts_ms),
            "endsAt": iso(max(ends, self.starts_ms + 1)),
        }
        if link:
            doc["generatorURL"] = link.format(**self.labels)
        return doc


class AlarmBook:
    """The open (and not yet delivered cleared) alarms, in their own SQLite file; only the
    delivery thread opens it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def get(self, key: str) -> Alarm | None:
        row = self.conn.execute("SELECT * FROM alarms WHERE key=?", (key,)).fetchone()
        return None if row is None else _alarm(row)

    def all(self) -> list[Alarm]:
        return [_alarm(r) for r in self.conn.execute("SELECT * FROM alarms ORDER BY starts_ms")]

    def apply(self, events: list[dict], labels_of: Callable[[dict], tuple[dict, dict]]) -> int:
        """Apply events in one transaction; returns how many changed an alarm."""
        changed = 0
        with database.transaction(self.conn):
            for e in events:
                key = f"{e['node']}/{e['event']}"
                ts = int(e["ts"])
                known = self.get(key)
                if known is not None and ts <= known.ts_ms:
                    continue  # read again after a crash, or older than what is known
                labels, annotations = labels_of(e)
                if e["state"]:
                    if known is not None and known.open:
                        continue  # raised again while open: the alert already stands
                    self._put(Alarm(key, ts, ts, None, labels, annotations, False))
                elif known is not None and known.open:
                    annotations = {
                        **known.annotations,
                        "cleared_at": iso(ts),
                        "cleared_value": annotations.get("value", ""),
                    }
                    self._put(
                        Alarm(key, ts, known.starts_ms, ts, known.labels, annotations, False, known.firing_ms)
                    )
                else:
                    continue  # a clear with no open alarm: nothing to end
                changed += 1
        return changed

    def _put(self, a: Alarm) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO alarms VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a.key,
                a.ts_ms,
                a.starts_ms,
                a.ends_ms,
                json.dumps(a.labels),
                json.dumps(a.annotations),
                int(a.posted),
                a.firing_ms,
            ),
        )

    def delivered(self, alarms: list[Alarm], now: int, min_firing_ms: int) -> None:
        """Alertmanager took these states (as `alert` made them at `now`): open ones are
        marked, resolved ones forgotten, cleared ones it took firing wait for their turn.
        A newer event meanwhile (another ts_ms) keeps its own state."""
        with database.transaction(self.conn):
            for a in alarms:
                if a.resolving(now, min_firing_ms):
                    self.conn.execute("DELETE FROM alarms WHERE key=? AND ts_ms=?", (a.key, a.ts_ms))
                else:
                    self.conn.execute(
                        "UPDATE alarms SET posted=?, firing_ms=coalesce(firing_ms, ?) WHERE key=? AND ts_ms=?",
                        (int(a.open), now, a.key, a.ts_ms),
                    )

    def forget(self, a: Alarm) -> None:
        self.conn.execute("DELETE FROM alarms WHERE key=? AND ts_ms=?", (a.key, a.ts_ms))


def _alarm(row: tuple) -> Alarm:
    key, ts, starts, ends, labels, annotations, posted, firing = row
    return Alarm(key, ts, starts, ends, json.loads(labels), json.loads(annotations), bool(posted), firing)


def labels_of(event: dict, places: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The alert's labels (what Alertmanager routes, groups and silences on) and
    annotations (what a person reads) for a normalized event (protocols SPEC 8.2)."""
    d, z, node, kind, name = event["district"], event["zone"], event["node"], event["kind"], event["event"]
    labels = {
        "alertname": name,
        "district": d,
        "zone": z,
        "node": node,
        "kind": kind,
        "event": name,
        "severity": event["severity"],
        "level": FIRST_LEVEL,
    }
    value = event.get("value")
    place = places.get(node, "")
    where = f"{place} ({d}/{z}/{node})" if place else f"{d}/{z}/{node}"
    annotations = {
        "summary": f"{name} on {kind} node {where}" + ("" if value is None else f": {value:g}"),
        "value": "" if value is None else f"{value:g}",
        "raised_at": iso(int(event["ts"])),
        "alarm_id": f"{node}/{event['boot']}/{event['seq']}",
        "recent_data": (
            f"urbansense query influxql --db district_{d} "
            f"'SELECT * FROM \"{kind}\" WHERE \"node\" = ''{node}'' AND time > now() - 1h'"
        ),
    }
    if place:
        annotations["place"] = place
    return labels, annotations


@dataclass
class PostOutcome:
    ok: bool
    retry: bool  # False: Alertmanager refused the alerts themselves (4xx)
    detail: str


def post_alerts(url: str, alerts: list[dict], timeout_s: float) -> PostOutcome:
    body = json.dumps(alerts).encode()
    request = urllib.request.Request(
        url + API_PATH, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            resp.read()
            return PostOutcome(True, False, str(resp.status))
    except urllib.error.HTTPError as err:
        detail = f"{err.code} {err.read()[:300].decode('utf-8', 'replace')}"
        # 400/422: the documents are wrong and would be refused for ever; anything else
        # (5xx, 404 of a proxy, 429) is the server's state and passes.
        return PostOutcome(False, err.code not in (400, 422), detail)
    except (OSError, ValueError) as err:
        return PostOutcome(False, True, str(getattr(err, "reason", err)))


class AlertmanagerDelivery(StreamConsumer):
    def __init__(
        self,
        buffer: DurableBuffer,
        cfg: AlertmanagerConfig,
        state_path: Path,
        metrics: EdgeMetrics,
        stop: threading.Event,
        on_crash: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(buffer, CONSUMER, Stream.ALARM, stop, name="alertmanager", on_crash=on_crash)
        self.cfg = cfg
        self.state_path = state_path
        self.metrics = metrics
        self.book: AlarmBook | None = None
        self._full_said = False  # a full disk under the state file, said once
        self.failures = 0
        self.next_repost = 0.0  # monotonic; 0: at once (after a start)
        self.min_firing_ms = int(cfg.min_firing_s * 1000)
        self.resolutions_due = False  # a cleared alarm waits to have fired long enough
        for outcome in ("ok", "failed", "rejected"):
            metrics.alertmanager_posts.labels(outcome)
        for state in ("firing", "resolved"):
            metrics.alertmanager_alerts.labels(state)

    def begin(self) -> None:
        self.book = AlarmBook(self.state_path)
        self._count()

    def close(self) -> None:
        if self.book is not None:
            self.book.close()

    # -- the stream
    def deliver(self, rows: list[OutboxRow]) -> bool:
        try:
            return self._deliver(rows)
        except sqlite3.Error as err:
            self._no_room(err)
            return False  # the same rows again once there is room: applying them is idempotent

    def _no_room(self, err: sqlite3.Error) -> None:
        """A full disk under the alarm state file: said once, waited out (the buffer's
        full-disk mode frees room), never a reason to stop the edge."""
        if not database.is_disk_full(err):
            raise err
        if not self._full_said:
            self._full_said = True
            log.warning("alertmanager: no room for its state file (%s); waiting for room", err)
        self.stop_event.wait(1.0)

    def _deliver(self, rows: list[OutboxRow]) -> bool:
        assert self.book is not None
        wanted = set(self.cfg.severities)
        events = []
        for r in rows:
            event = json.loads(r.body)
            if event.get("severity") in wanted:
                events.append(event)
        if events:
            self.book.apply(events, lambda e: labels_of(e, self.cfg.places))
        delivered = self._post(lambda a: not a.posted)
        self._full_said = False
        return delivered

    def batch(self, conn: sqlite3.Connection, mark: int) -> list[OutboxRow]:
        """Between rows, post every open alarm again when its time has come, and the
        resolutions that were waiting for their alarm to have fired long enough."""
        try:
            if time.monotonic() >= self.next_repost:
                if self._post(lambda a: True, wait=False):
                    self.next_repost = time.monotonic() + self.cfg.repost_s
            elif self.resolutions_due:
                now = now_ms()
                self._post(lambda a: a.resolving(now, self.min_firing_ms), wait=False)
        except sqlite3.Error as err:
            self._no_room(err)
        return super().batch(conn, mark)

    # -- posting
    def _post(self, which: Callable[[Alarm], bool], wait: bool = True) -> bool:
        """Post the alarms `which` picks; True once Alertmanager took them (or refused
        them for good, or there were none). On a failure: backoff (waited here if `wait`,
        else the next try is put off) and False."""
        assert self.book is not None
        alarms = [a for a in self.book.all() if which(a)]
        if not alarms:
            return True
        if self._send(alarms):
            self._count()
            return True
        self._count()
        ceiling = min(self.cfg.retry_max_s, self.cfg.retry_min_s * (2 ** min(self.failures, 30)))
        delay = random.uniform(self.cfg.retry_min_s, max(self.cfg.retry_min_s, ceiling))
        if wait:
            self.stop_event.wait(delay)
        else:
            self.next_repost = time.monotonic() + delay
        return False

    def _send(self, alarms: list[Alarm]) -> bool:
        """One POST; True once taken or refused for good. A refused batch is split until
        the refused alerts are found (Alertmanager takes the valid ones of a batch and
        answers 400 for the rest; posting them again is harmless)."""
        assert self.book is not None
        now = now_ms()
        hold_ms = int(self.cfg.hold_s * 1000)
        docs = [a.alert(now, hold_ms, self.cfg.link, self.min_firing_ms) for a in alarms]
        outcome = post_alerts(self.cfg.url, docs, self.cfg.timeout_s)
        if outcome.ok:
            self.metrics.alertmanager_posts.labels("ok").inc()
            for a in alarms:
                if a.resolving(now, self.min_firing_ms):
                    self.metrics.alertmanager_alerts.labels("resolved").inc()
                elif a.firing_ms is None:
                    self.metrics.alertmanager_alerts.labels("firing").inc()
            if self.failures:
                log.info("alertmanager: posting again after %d failed attempts", self.failures)
            self.failures = 0
            self.book.delivered(alarms, now, self.min_firing_ms)
            return True
        if outcome.retry:
            self.failures += 1
            self.metrics.alertmanager_posts.labels("failed").inc()
            if self.failures in (1, 10) or self.failures % 100 == 0:
                log.warning(
                    "alertmanager at %s: post failed (%s), attempt %d; retrying with backoff",
                    self.cfg.url,
                    outcome.detail,
                    self.failures,
                )
            return False
        if len(alarms) > 1:
            half = len(alarms) // 2
            return self._send(alarms[:half]) and self._send(alarms[half:])
        # Refused for ever as it is: a dead letter with Alertmanager's reason.
        self.metrics.alertmanager_posts.labels("rejected").inc()
        log.warning("alertmanager refused the alert of %s: %s", alarms[0].key, outcome.detail)
        self.buffer.post_dead_letter(
            DeadLetter(
                "sink_rejected", None, json.dumps(docs[0]).encode(), outcome.detail[:500], now, CONSUMER
            )
        )
        self.book.forget(alarms[0])
        return True

    def _count(self) -> None:
        assert self.book is not None
        alarms = self.book.all()
        self.resolutions_due = any(not a.open for a in alarms)
        self.metrics.alertmanager_open.set(sum(1 for a in alarms if a.open))
        self.metrics.alertmanager_undelivered.set(sum(1 for a in alarms if not a.posted))


class AlertmanagerCollector(Collector):
    """Alertmanager's own notification counters, read from its /metrics at scrape time and
    shown among the edge's: an alarm the edge delivered can still fail at the last step
    (an SMTP server refusing, a webhook down), and the edge's operator sees it here."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def describe(self):
        return []

    def collect(self):
        sent: dict[str, float] = {}
        failed: dict[str, float] = {}
        up = 1.0
        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=self.timeout_s) as resp:
                text = resp.read().decode()
            for family in text_string_to_metric_families(text):
                book = {"alertmanager_notifications": sent, "alertmanager_notifications_failed": failed}.get(
                    family.name
                )
                if book is None:
                    continue
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        key = sample.labels.get("integration", "")
                        book[key] = book.get(key, 0.0) + sample.value
        except (OSError, ValueError):
            up = 0.0
        yield GaugeMetricFamily(P_AM + "up", "1 if Alertmanager answered the last scrape", value=up)
        for name, book, text in (
            ("notifications", sent, "Notifications Alertmanager attempted, by integration (its own counter)"),
            ("notifications_failed", failed, "Notifications Alertmanager failed to send, by integration"),
        ):
            family = CounterMetricFamily(P_AM + name, text, labels=["integration"])
            for integration, value in sorted(book.items()):
                family.add_metric([integration], value)
            yield family
