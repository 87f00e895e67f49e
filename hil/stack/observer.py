"""A read-only MQTT client that watches the city as operations would: every node message
(`city/v1/#`) and every republished alarm (`alarms/v1/#`). The live view, the demo's
latency figures and the HIL expectations all read what it recorded.

It connects with a fixed client id and a persistent session, so messages published while
it reconnects (after a broker restart) are still delivered to it."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from protocols.decoder import decode
from protocols.errors import ProtocolError
from protocols.topics import EDGE_CHANNELS

EDGE_TO_NODE = tuple("/" + channel for channel in EDGE_CHANNELS)  # topic endings


@dataclass(frozen=True)
class Alarm:
    """One message on alarms/v1/{district}/{zone}/{node}/{event}."""

    received: float  # time.monotonic() at arrival
    received_wall: float  # time.time() at arrival
    district: str
    zone: str
    node: str
    event: str
    state: bool | None
    severity: str | None
    value: float | None


@dataclass(frozen=True)
class Ack:
    received: float
    node: str
    cmd_id: str
    ok: bool
    error: str | None
    result: dict[str, Any] | None


@dataclass
class NodeSeen:
    """What the broker carried for one node."""

    district: str
    zone: str
    kind: str
    online: bool | None = None  # from its retained status / last will
    last_seen: float = 0.0  # monotonic time of its newest message
    interval_s: float | None = None
    readings: list[tuple[int, int]] = field(default_factory=list)  # telemetry (boot, seq), arrival order
    events: list[tuple[int, int]] = field(default_factory=list)  # event (boot, seq), arrival order


class CityObserver:
    def __init__(self, host: str, port: int, client_id: str = "urbansense-observer") -> None:
        self.host, self.port = host, port
        self._lock = threading.Condition()
        self.nodes: dict[str, NodeSeen] = {}
        self.alarms: list[Alarm] = []
        self.acks: list[Ack] = []
        self.invalid = 0
        self.invalid_on: Counter[str] = Counter()  # by topic: a shared broker carries others' too
        # (monotonic arrival time, district, zone) of node messages, for the rates
        self._arrivals: deque[tuple[float, str, str]] = deque()
        self.messages = 0
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=1)

    # -- lifecycle
    def start(self, timeout: float = 10.0) -> CityObserver:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            raise ConnectionError(f"observer: no connection to the broker at {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos)

    # -- callbacks (paho's network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            return
        client.subscribe([("city/v1/#", 1), ("alarms/v1/#", 1)])
        self._connected.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        now, wall = time.monotonic(), time.time()
        with self._lock:
            self.messages += 1
            if msg.topic.endswith(EDGE_TO_NODE):
                # What edges and operators send to nodes (commands, the edge's retained
                # receipts): not a node's message, neither counted nor decoded.
                self._lock.notify_all()
                return
            parts = msg.topic.split("/")
            if len(parts) >= 4:
                self._arrivals.append((now, parts[2], parts[3]))
            if msg.topic.startswith("alarms/"):
                self._alarm(msg, now, wall)
            else:
                self._node_message(msg, now)
            self._lock.notify_all()

    def _alarm(self, msg: mqtt.MQTTMessage, now: float, wall: float) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 6:
            return
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        self.alarms.append(
            Alarm(
                now,
                wall,
                parts[2],
                parts[3],
                parts[4],
                parts[5],
                body.get("state"),
                body.get("severity"),
                body.get("value"),
            )
        )

    def _node_message(self, msg: mqtt.MQTTMessage, now: float) -> None:
        if msg.retain and not msg.payload:
            return
        try:
            m = decode(msg.topic, msg.payload, int(time.time() * 1000))
        except ProtocolError:
            self.invalid += 1
            self.invalid_on[msg.topic] += 1
            return
        node = self.nodes.get(m["node"])
        if node is None:
            node = self.nodes[m["node"]] = NodeSeen(m["district"], m["zone"], m["kind"])
        node.last_seen = now
        channel = m["channel"]
        if channel == "telemetry":
            node.readings.extend((r["boot"], r["seq"]) for r in m["readings"])
            node.online = True if node.online is None else node.online
        elif channel == "event":
            node.events.append((m["boot"], m["seq"]))
        elif channel == "status":
            node.online = m["state"] == "online"
            if m.get("interval_s"):
                node.interval_s = m["interval_s"]
        elif channel == "cmd/ack":
            self.acks.append(Ack(now, m["node"], m["id"], m["ok"], m.get("error"), m.get("result")))

    # -- queries (any thread)
    def rates(self, window_s: float = 5.0) -> dict[tuple[str, str], float]:
        """Messages per second per (district, zone) over the last `window_s`."""
        with self._lock:
            cutoff = time.monotonic() - window_s
            while self._arrivals and self._arrivals[0][0] < cutoff:
                self._arrivals.popleft()
            counts: dict[tuple[str, str], int] = {}
            for _, district, zone in self._arrivals:
                counts[(district, zone)] = counts.get((district, zone), 0) + 1
            return {k: v / window_s for k, v in counts.items()}

    def snapshot(self) -> dict[str, NodeSeen]:
        with self._lock:
            return {
                k: NodeSeen(
                    v.district,
                    v.zone,
                    v.kind,
                    v.online,
                    v.last_seen,
                    v.interval_s,
                    list(v.readings),
                    list(v.events),
                )
                for k, v in self.nodes.items()
            }

    def latest_alarms(self, n: int = 8) -> list[Alarm]:
        with self._lock:
            return self.alarms[-n:]

    def alarms_matching(
        self, node: str, event: str, state: bool | None = None, since: float = 0.0
    ) -> list[Alarm]:
        with self._lock:
            return [
                a
                for a in self.alarms
                if a.node == node
                and a.event == event
                and a.received >= since
                and (state is None or a.state is state)
            ]

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Block until predicate() (called under the lock) returns something truthy."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = predicate()
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.5))

    def wait_alarm(self, node: str, event: str, state: bool, since: float, timeout: float) -> Alarm | None:
        def first() -> Alarm | None:
            return next(
                (
                    a
                    for a in self.alarms
                    if a.node == node and a.event == event and a.state is state and a.received >= since
                ),
                None,
            )

        return self.wait_for(first, timeout)

    def wait_ack(self, node: str, cmd_id: str, since: float, timeout: float) -> Ack | None:
        def first() -> Ack | None:
            return next(
                (a for a in self.acks if a.node == node and a.cmd_id == cmd_id and a.received >= since), None
            )

        return self.wait_for(first, timeout)

    def wait_online(self, nodes: list[str], timeout: float) -> list[str]:
        """Wait until every node has said it is online; return those that did not."""

        def all_online() -> bool:
            return all(n in self.nodes and self.nodes[n].online for n in nodes)

        self.wait_for(all_online, timeout)
        with self._lock:
            return [n for n in nodes if not (n in self.nodes and self.nodes[n].online)]
