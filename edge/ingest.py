"""MqttIngest: the edge's MQTT session (paho-mqtt 2.x).

- Persistent session: fixed client id, `clean_session=False`, QoS 1 subscriptions, so
  the broker keeps every message for this edge while it is down or restarting.
- Manual acknowledgement (`manual_ack=True`): paho does not PUBACK on its own; the commit
  loop calls `ack()` only after the message is committed to the buffer. A message that
  was handed over but not committed when the process dies is redelivered by the broker,
  and the buffer's identity index makes the redelivery harmless.
- Messages go from paho's network thread into the Inbox, stamped with their arrival time.
- Events have a session of their own (client id + "-events", subscribed only to the
  `event` channel): the broker delivers each session's queue in order, so in one session
  an alarm would wait behind every telemetry message queued before it. The events
  session's messages take the Inbox's urgent lane, and it publishes the alarms.
"""

from __future__ import annotations

import logging
import ssl
import struct
import sys
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import EdgeConfig
from edge.limits import clip_payload
from edge.window import UnackedWindow
from protocols.topics import RECEIPT, ROOT

log = logging.getLogger("urbansense.edge.ingest")

_PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1 PUBACK: type, remaining length 2, packet id


@dataclass(slots=True)
class Incoming:
    mid: int
    qos: int
    topic: str
    payload: bytes
    arrival_ms: int
    generation: int  # which connection delivered it (acks go to that one only)
    source: MqttIngest
    size: int = -1  # payload size on arrival (an oversize payload is kept clipped)
    retained: bool = False  # the broker's replay of a retained message on subscribing
    # The fast decoder's message when the receiving process decoded it already (and the
    # fast pass accepted it): then the commit loop does not decode it again.
    decoded: dict | None = None
    lines: list[str] | None = None  # and the line of each of its readings (edge.schema.raw_line)


# A session not connected this long is said at warning, with the broker's address.
SAY_DOWN_AFTER_S = 3.0

# How long stop() waits for the broker to answer its barrier, then for its DISCONNECT (and
# what was queued before it) to be written.
STOP_FLUSH_S = 5.0

# The filter of stop()'s barrier: an UNSUBSCRIBE of a filter no edge subscribes to (outside
# the city's tree), so it removes nothing from the session.
BARRIER_FILTER = "urbansense-edge/stop-barrier"

# QoS 1 messages of the main session are bounded by the edge's window (edge.window: the
# edge acks only after the commit, and paho's thread waits for room), those of the events
# session by the broker's max_inflight_messages. QoS 0 has no flow control and the
# protocol never uses it: past this many waiting messages, a QoS 0 message is dropped and
# counted rather than queued.
QOS0_MAX_WAITING = 20_000


class Inbox:
    """Messages waiting for the commit loop, in two lanes: urgent (events) first."""

    def __init__(self, qos0_max_waiting: int = QOS0_MAX_WAITING) -> None:
        self._urgent: deque[Incoming] = deque()
        self._normal: deque[Incoming] = deque()
        self._cond = threading.Condition()
        self._waiting = 0
        self.qos0_max_waiting = qos0_max_waiting
        # Counters the metrics read at scrape time.
        self.qos0_dropped = 0
        self.redelivered = 0
        self.receipts_ignored = 0
        self._dropping = False  # QoS 0 is being dropped (warned once per episode)

    def note_redelivered(self) -> None:
        with self._cond:
            self.redelivered += 1

    def note_receipt_ignored(self) -> None:
        with self._cond:
            self.receipts_ignored += 1

    def _admits(self, message: Incoming) -> bool:
        """Whether a message may wait (call under the lock): QoS 0 only while fewer than
        qos0_max_waiting wait; one dropped is counted, and warned of once an episode."""
        if message.qos != 0:
            return True
        if len(self._urgent) + len(self._normal) < self.qos0_max_waiting:
            self._dropping = False
            return True
        self.qos0_dropped += 1
        if not self._dropping:
            self._dropping = True
            log.warning("inbox full (%d waiting): dropping QoS 0 messages", self.qos0_max_waiting)
        return False

    def put(self, message: Incoming, urgent: bool = False) -> None:
        with self._cond:
            if not self._admits(message):
                return
            (self._urgent if urgent else self._normal).append(message)
            if self._waiting:
                self._cond.notify()

    def put_many(
        self, messages: list[Incoming], redelivered: int = 0, receipts_ignored: int = 0, qos0_dropped: int = 0
    ) -> None:
        """Messages of the normal lane, and counts of what was seen on the way, at once
        (the receiving process's batches: one lock for the batch)."""
        with self._cond:
            self.redelivered += redelivered
            self.receipts_ignored += receipts_ignored
            self.qos0_dropped += qos0_dropped
            for message in messages:  # one by one: each admitted one counts for the next
                if self._admits(message):
                    self._normal.append(message)
            if self._waiting:
                self._cond.notify()

    def __len__(self) -> int:
        return len(self._urgent) + len(self._normal)

    def urgent_waiting(self) -> bool:
        return bool(self._urgent)

    def put_back(self, messages: list[Incoming]) -> None:
        """Return untaken messages to the front of their lane, in order (events to the
        urgent lane)."""
        with self._cond:
            for m in reversed(messages):
                (self._urgent if getattr(m.source, "urgent", False) else self._normal).appendleft(m)

    def take(self, limit: int, timeout: float, wait_s: float = 0.0) -> list[Incoming]:
        """Up to `limit` messages, urgent ones first; waits up to `timeout` for the first,
        then up to `wait_s` more for company (group commit)."""
        with self._cond:
            self._waiting += 1
            try:
                if not self._urgent and not self._normal:
                    self._cond.wait(timeout)
                if wait_s and not self._urgent and len(self._normal) < limit:
                    deadline = time.monotonic() + wait_s
                    while len(self._normal) < limit and not self._urgent:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or not self._cond.wait(remaining):
                            break
            finally:
                self._waiting -= 1
            out: list[Incoming] = []
            if self._urgent:
                # Urgent messages are committed on their own: a small, quick transaction.
                while self._urgent and len(out) < limit:
                    out.append(self._urgent.popleft())
                return out
            while self._normal and len(out) < limit:
                out.append(self._normal.popleft())
            return out


class NoTopicCallbacks:
    """Stands in for paho's table of per-topic message callbacks, which the edge never
    fills (it has one on_message): paho looks every received message up in that table,
    a topic split and a generator walking an empty tree, about 6 % of the edge's time in
    a backlog. Filling it (message_callback_add) fails loudly here: no __setitem__."""

    @staticmethod
    def iter_match(topic: str) -> tuple[()]:
        return ()


def is_receipt(topic: str) -> bool:
    """A receipt topic, city/v1/{district}/{zone}/{node}/receipt: what edges publish."""
    return topic.startswith(ROOT + "/") and topic.count("/") == 5 and topic.endswith("/" + RECEIPT)


def split_filters(filters: list[str]) -> tuple[list[str], list[str]]:
    """(event filters, the others): filters of the event channel get their own session."""
    events = [f for f in filters if f.endswith("/event")]
    return events, [f for f in filters if not f.endswith("/event")]


class SessionState:
    """A broker session's connection state, for the log and the metrics (MqttCollector):
    kept by MqttIngest in this process, mirrored by ReceiverSession from its process."""

    client_id: str
    urgent: bool = False

    def __init__(self, members: list[tuple[str, int]], client_id: str) -> None:
        self.client_id = client_id
        # A clustered tier: each (re)connection attempt after the first goes to the next
        # member. Any member serves this client's session (it lives in the cluster).
        self.members = members
        self.member = zlib.crc32(client_id.encode()) % len(members)
        self.generation = 0  # successful connections so far
        self.connected = threading.Event()
        self.down_since = time.monotonic()  # not connected since (start, or the last drop)
        self.said_down = False
        self.last_error = ""
        self.last_error_at = 0.0  # wall clock, s
        self.connect_errors = 0
        self.last_message = time.monotonic()  # the last message, or the start

    @property
    def server(self) -> str:
        host, port = self.members[self.member]
        return f"{host}:{port}"

    def say_up(self) -> None:
        """A connection is up: a session that was said down is said back, once."""
        if self.said_down:
            log.warning(
                "mqtt broker %s answers again, after %.0f s without it",
                self.server,
                time.monotonic() - self.down_since,
            )
        self.said_down = False

    def check(self) -> None:
        """Once a second (the commit loop): a session down for a few seconds is said once,
        at warning, with the broker's address and the last error."""
        if self.connected.is_set() or self.said_down:
            return
        down_for = time.monotonic() - self.down_since
        if down_for >= SAY_DOWN_AFTER_S:
            self.said_down = True
            log.warning(
                "mqtt broker %s does not answer: %s not connected for %.0f s (%s); retrying",
                self.server,
                self.client_id,
                down_for,
                self.last_error or "no answer to CONNECT",
            )


class MqttIngest(SessionState):
    def __init__(
        self,
        cfg: EdgeConfig,
        inbox: Inbox,
        filters: list[str] | None = None,
        client_id: str | None = None,
        urgent: bool = False,
        window: int | None = None,
    ) -> None:
        m = cfg.mqtt
        super().__init__(m.members, client_id or m.client_id)
        self.cfg = cfg
        self.inbox = inbox
        self.urgent = urgent
        # How many QoS 1 messages may wait for their commit (edge.window); None: no
        # bound (the events session: its messages are few, and never wait).
        self.window = UnackedWindow(window, m.keepalive_s / 2) if window else None
        self.filters = filters if filters is not None else cfg.subscriptions()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if m.username is not None:
            self.client.username_pw_set(m.username, m.password)
        if m.tls_ca or m.tls_cert:
            self.client.tls_set(
                ca_certs=cfg.path(m.tls_ca) if m.tls_ca else None,
                certfile=cfg.path(m.tls_cert) if m.tls_cert else None,
                keyfile=cfg.path(m.tls_key) if m.tls_key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self.client.max_inflight_messages_set(1000)  # our alarms, outgoing
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self._attempts = 0
        if len(self.members) > 1:
            self.client.on_pre_connect = self._next_member
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        if isinstance(getattr(self.client, "_on_message_filtered", None), mqtt.MQTTMatcher):
            self.client._on_message_filtered = NoTopicCallbacks()
        # paho's internal packet queue, for a group's PUBACKs in one write (ack()); a paho
        # release without it gets one public ack() per message.
        self._queue_packet = getattr(self.client, "_packet_queue", None)
        self._disconnected = threading.Event()  # set by each disconnection (stop() waits)
        self._barrier_answered = threading.Event()  # set by each UNSUBACK (stop() waits)
        self.client.on_unsubscribe = self._on_unsubscribe

    # -- paho callbacks (network thread) ---------------------------------------------
    def _next_member(self, client, userdata) -> None:
        """Called by paho's reconnect just before it opens its socket. paho has no list of
        servers, and its `host` setter refuses while its own reconnect loop runs, so the
        member is switched on its attributes here, at the one point it reads them."""
        self._attempts += 1
        if self._attempts > 1:
            self.member = (self.member + 1) % len(self.members)
        client._host, client._port = self.members[self.member]

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connect_error(f"refused: {reason_code}")
            log.warning("mqtt broker %s refused %s: %s", self.server, self.client_id, reason_code)
            return
        self.say_up()
        self.generation += 1
        # Always (re)subscribe: idempotent for an existing session, needed for a new one.
        client.subscribe([(f, 1) for f in self.filters])
        log.info(
            "mqtt connected as %s to %s (session present: %s), subscribed to %s",
            self.client_id,
            self.server,
            flags.session_present,
            ", ".join(self.filters),
        )
        self.connected.set()

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its `except OSError` around the connection attempt and
        # passes no error: the one being handled is the cause.
        err = sys.exc_info()[1]
        self._connect_error(f"{type(err).__name__}: {err}" if err is not None else "connection failed")

    def _connect_error(self, what: str) -> None:
        self.last_error = what
        self.last_error_at = time.time()
        self.connect_errors += 1

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._disconnected.set()
        if self.connected.is_set():
            self.down_since = time.monotonic()
        self.connected.clear()
        # A clean stop (our own DISCONNECT) is no warning.
        level = logging.WARNING if reason_code.is_failure else logging.INFO
        log.log(level, "mqtt %s disconnected: %s", self.client_id, reason_code)

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._barrier_answered.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        arrival = time.time_ns() // 1_000_000
        self.last_message = time.monotonic()
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        if is_receipt(topic):
            # The edge's own receipts, under a wide subscription (`topics = ["city/#"]`):
            # not node data, and not a protocol violation to quarantine. Acknowledged at
            # once, so the broker does not keep it waiting for this session.
            client.ack(msg.mid, msg.qos)
            self.inbox.note_receipt_ignored()
            return
        if self.window is not None and msg.qos == 1:
            self.window.enter(self.generation)
        # Measured and clipped here, so an oversize payload is never queued whole.
        payload, size = clip_payload(msg.payload)
        if msg.dup:
            # The broker sent it before (the earlier delivery was not acked, e.g. the
            # connection dropped): a valid reading is then a duplicate by identity; an
            # invalid message has no identity and may be quarantined a second time.
            self.inbox.note_redelivered()
        self.inbox.put(
            Incoming(
                msg.mid, msg.qos, topic, payload, arrival, self.generation, self, size, bool(msg.retain)
            ),
            self.urgent,
        )

    # -- used by the commit loop and the alarm publisher -----------------------------
    def ack(self, messages: list[Incoming]) -> int:
        """PUBACK committed messages. A message delivered on an earlier connection is not
        acked here: the broker redelivers it on the new one, and the buffer drops it as a
        duplicate then (its packet id may already belong to another message)."""
        gen = self.generation
        mine = [m for m in messages if m.source is self and m.qos > 0 and m.generation == gen]
        twos = [m for m in mine if m.qos == 2]  # none: the subscriptions are QoS 1
        for m in twos:
            self.client.ack(m.mid, m.qos)
        return len(twos) + self.ack_ids(gen, [m.mid for m in mine if m.qos == 1])

    def ack_ids(self, generation: int, mids: list[int]) -> int:
        """PUBACK these QoS 1 packet ids if they came on the connection that is up now
        (`generation`); else nothing (the broker delivers them again)."""
        if generation != self.generation or not mids:
            return 0
        if self.window is not None:
            self.window.release(generation, len(mids))
        if self._queue_packet is None:
            for mid in mids:
                self.client.ack(mid, 1)
            return len(mids)
        # The group's PUBACKs as one write. paho's ack() queues a packet per message, each
        # with a byte to wake paho's thread: a system call per message on this thread and a
        # socket write per message on paho's. PUBACK is 4 bytes in MQTT 3.1.1 (the edge's
        # protocol) and the broker reads the packets the same either way.
        packets = b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids])
        self._queue_packet(mqtt.PUBACK, packets, 0, 0)
        return len(mids)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=False)

    def publish_retained_all(self, messages: list[tuple[str, bytes]]) -> None:
        """Receipts, each as publish_retained()."""
        for topic, payload in messages:
            self.publish_retained(topic, payload)

    def publish_retained(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """QoS 1, retained (receipts: the newest waits at the broker for its node). While
        disconnected paho keeps it and sends it on the next connection."""
        return self.client.publish(topic, payload, qos=1, retain=True)

    def unlimited_outgoing(self) -> None:
        """No cap on this session's QoS 1 messages in flight. With a cap, paho walks every
        message it holds on each PUBACK to find the next one to send: with hundreds of
        receipts out that walk was a tenth of the edge's time in a backlog. Receipts are
        at most one per node per window, so what is in flight stays bounded by the nodes."""
        self.client.max_inflight_messages_set(0)

    def start(self) -> None:
        self.down_since = self.last_message = time.monotonic()
        host, port = self.members[self.member]
        self.client.connect_async(host, port, keepalive=self.cfg.mqtt.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly, then stop paho's thread.

        Nothing in MQTT 3.1.1 answers a PUBACK or a DISCONNECT, and their being written is
        not their being read: a broker serves each connection a packet at a time, and a
        restart that connects under this client id before the broker has read the last
        group's PUBACKs takes the session over with that group still in flight (Mosquitto
        then drops what the old connection had left unread and sends the group again).
        So stop() first waits for the broker's answer to an UNSUBSCRIBE that changes
        nothing (`BARRIER_FILTER`): a broker handles one connection's packets in order, so
        it has read every PUBACK queued before it. Then it waits for the DISCONNECT to be
        written: paho writes what is queued only while its thread runs, and `loop_stop`
        does not wait for that."""
        if self.window is not None:
            self.window.close()  # paho's thread must not wait for room: it reads the answer
        try:
            connected = self.connected.is_set()
            if connected:
                self._barrier_answered.clear()
                rc, _ = self.client.unsubscribe(BARRIER_FILTER)
                if rc == mqtt.MQTT_ERR_SUCCESS and not self._barrier_answered.wait(STOP_FLUSH_S):
                    log.warning(
                        "mqtt broker %s did not answer %s's last packets within %.0f s: "
                        "messages it acked may come again",
                        self.server,
                        self.client_id,
                        STOP_FLUSH_S,
                    )
            self._disconnected.clear()
            self.client.disconnect()
            if connected:
                self._disconnected.wait(STOP_FLUSH_S)
        finally:
            self.client.loop_stop()
