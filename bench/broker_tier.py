"""The broker tier, in one run: Mosquitto, NATS alone (JetStream + its MQTT gateway,
replicas 1) and a 3-member NATS cluster (replicas 3), each private on loopback
(hil/services.py), under the same load.

- sessions (first, on the fresh broker): persistent sessions as duty-cycled nodes leave
  them (clean_session false, subscribed QoS 1 to their `cmd` topic, then disconnected:
  asleep), then the broker's idle CPU (% of one core, over --idle-s) and its resident
  memory beyond what it had before; then each session resumed once (a CONNECT with
  clean_session false, as every wake of a duty-cycled node does): resumes/s and the
  broker's CPU per resume.
- throughput: publishers send QoS 1 readings (a real reading's payload, ~200 bytes) with
  a window of unacknowledged ones, as fast as the broker acknowledges them, to a
  persistent QoS 1 subscriber like the edge; msg/s = messages / (first publish → last
  delivered), and the broker's CPU time (user + system of every member, /proc) per message.
- PUBACK latency: one publisher, one message in flight at a time, p50/p99.

The load generator runs on the same two cores as the brokers: on Mosquitto the msg/s is
the clients' limit more than the broker's; its CPU per message is the broker's own.

    .venv/bin/python bench/broker_tier.py [--messages 20000] [--sessions 1000] [--idle-s 30]
        [--tiers mosquitto,nats1,nats3] [--json]

With --sessions 0 the messages go through brokers that hold no other sessions: on NATS a
message's cost grows with the sessions there are (each is a consumer of the stream the
message is stored in).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hil.services import ManagedServer, MosquittoServer, NatsCluster  # noqa: E402
from protocols import codec  # noqa: E402

TOPIC = "city/v1/bench/tier/{node}/telemetry"
WINDOW = 100  # unacknowledged publishes per publisher, as a busy edge-side client keeps


# -- a minimal MQTT 3.1.1 client on a blocking socket -----------------------------------
# Written out rather than with paho: a thousand sessions opened from one process (paho runs
# a thread per client), and pipelined publishes whose PUBACKs are timed one by one.
def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


class RawClient:
    def __init__(self, port: int, client_id: str, clean: bool = True, keepalive: int = 60) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flags = 0x02 if clean else 0x00
        body = _text("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _text(client_id)
        self.sock.sendall(b"\x10" + _length(len(body)) + body)
        kind, rest = self.read()
        if kind != 0x20 or rest[1] != 0:
            raise RuntimeError(f"{client_id}: connection refused ({rest!r})")

    def read(self) -> tuple[int, bytes]:
        head = self._exactly(1)[0]
        n, mult = 0, 1
        while True:
            byte = self._exactly(1)[0]
            n += (byte & 0x7F) * mult
            mult *= 128
            if not byte & 0x80:
                break
        return head & 0xF0, self._exactly(n)

    def _exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed by the broker")
            buf += chunk
        return buf

    def publish(self, pid: int, topic: str, payload: bytes) -> None:
        body = _text(topic) + struct.pack("!H", pid) + payload
        self.sock.sendall(b"\x32" + _length(len(body)) + body)

    def puback(self) -> int:
        while True:
            kind, rest = self.read()
            if kind == 0x40:
                return struct.unpack("!H", rest[:2])[0]

    def subscribe(self, topic: str) -> bool:
        """True if granted; False if the broker answered 0x80 (refused)."""
        body = struct.pack("!H", 1) + _text(topic) + b"\x01"
        self.sock.sendall(b"\x82" + _length(len(body)) + body)
        kind, rest = self.read()
        if kind != 0x90:
            raise RuntimeError(f"no SUBACK for {topic}")
        return rest[2] != 0x80

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")
        finally:
            self.sock.close()


def reading(i: int) -> tuple[str, bytes]:
    node = f"b{i % 500:04d}"
    fields = {"pm25": float(i % 500), "pm10": 20.0, "uptime_s": float(i), "battery_v": 3.6}
    return TOPIC.format(node=node), codec.encode_reading(node, "air", 1, i // 500, fields, age_ms=1000)


def publish_burst(port: int, name: str, first: int, count: int) -> None:
    """One publisher process: `count` readings with WINDOW unacknowledged at most."""
    client = RawClient(port, name)
    inflight: set[int] = set()
    sent = 0
    while sent < count or inflight:
        while sent < count and len(inflight) < WINDOW:
            pid = sent % 60000 + 1
            client.publish(pid, *reading(first + sent))
            inflight.add(pid)
            sent += 1
        inflight.discard(client.puback())
    client.close()


# -- the brokers ----------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Tier:
    def __init__(self, name: str, servers: list[ManagedServer]) -> None:
        self.name = name
        self.servers = servers

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.servers if s.process is not None]

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids())

    def rss(self) -> int:
        return sum(rss_bytes(p) for p in self.pids())


@contextmanager
def started(name: str, workdir: Path) -> Iterator[Tier]:
    if name == "mosquitto":
        broker = MosquittoServer(workdir / name).start()
        try:
            yield Tier(name, [broker])
        finally:
            broker.stop()
        return
    cluster = NatsCluster(workdir / name, size=1 if name == "nats1" else 3).start()
    try:
        yield Tier(name, list(cluster.members))
    finally:
        cluster.stop()


# -- the three measurements ----------------------------------------------------------
class Subscriber:
    """The edge's side: a persistent QoS 1 session that counts what it is delivered."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self.done = threading.Event()
        self.expected = 0
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-edge", clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(TOPIC.format(node="+"), qos=1)
        if not subscribed.wait(30):
            raise RuntimeError("no SUBACK for the subscriber")

    def _on_message(self, client, userdata, msg) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def throughput(tier: Tier, messages: int, publishers: int = 2) -> dict:
    sub = Subscriber(tier.ports[0])
    sub.expected = messages
    share = messages // publishers
    cpu0 = tier.cpu()
    t0 = time.monotonic()
    procs = [
        multiprocessing.Process(
            target=publish_burst, args=(tier.ports[i % len(tier.ports)], f"bench-pub-{i}", i * share, share)
        )
        for i in range(publishers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    delivered = sub.done.wait(300)
    elapsed = time.monotonic() - t0
    cpu = tier.cpu() - cpu0
    sub.close()
    if not delivered:
        raise RuntimeError(f"{tier.name}: {sub.count} of {messages} delivered")
    return {"msg_per_s": round(messages / elapsed), "broker_cpu_us_per_msg": round(cpu / messages * 1e6, 1)}


def puback_latency(tier: Tier, count: int = 2000) -> dict:
    client = RawClient(tier.ports[-1], "bench-latency")
    samples = []
    for i in range(count):
        t0 = time.perf_counter()
        client.publish(i % 60000 + 1, *reading(i))
        client.puback()
        samples.append((time.perf_counter() - t0) * 1000)
    client.close()
    cuts = statistics.quantiles(samples, n=100)
    return {"puback_p50_ms": round(cuts[49], 2), "puback_p99_ms": round(cuts[98], 2)}


def open_session(port: int, i: int, subscribe: bool = True) -> int:
    """A node's session: created (subscribed to its cmd topic), or resumed as a
    duty-cycled node resumes it at every wake (a CONNECT with clean_session false).
    Returns how often the subscription was refused before it was granted (a loaded
    NATS answers 0x80 when it cannot create the session's consumer in time)."""
    node = f"s{i:05d}"
    client = RawClient(port, f"bench-{node}", clean=False)
    refused = 0
    while subscribe and not client.subscribe(f"city/v1/bench/tier/{node}/cmd"):
        refused += 1
        if refused == 10:
            raise RuntimeError(f"{node}: subscription refused 10 times")
    client.close()
    return refused


def sessions(tier: Tier, count: int, idle_s: float) -> dict:
    time.sleep(5)  # a fresh cluster's streams and leaders settle
    rss0 = tier.rss()
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        refused = sum(pool.map(lambda i: open_session(tier.ports[i % len(tier.ports)], i), range(count)))
    opened = time.monotonic() - t0
    time.sleep(5)
    cpu0, w0 = tier.cpu(), time.monotonic()
    time.sleep(idle_s)
    idle = (tier.cpu() - cpu0) / (time.monotonic() - w0)
    rss = tier.rss()
    # Every session resumed once, as each node's next wake does.
    cpu1, t1 = tier.cpu(), time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: open_session(tier.ports[(i + 1) % len(tier.ports)], i, False), range(count)))
    resumed = time.monotonic() - t1
    return {
        "sessions": count,
        "sessions_opened_per_s": round(count / opened),
        "subscribes_refused": refused,
        "resumes_per_s": round(count / resumed),
        "broker_cpu_us_per_resume": round((tier.cpu() - cpu1) / count * 1e6),
        "idle_cpu_pct_core": round(idle * 100, 1),
        "session_rss_mb": round((rss - rss0) / 1e6, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--idle-s", type=float, default=30.0)
    p.add_argument("--latency-samples", type=int, default=2000)
    p.add_argument("--tiers", default="mosquitto,nats1,nats3")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every broker started is stopped again.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    bad = [t for t in tiers if t not in ("mosquitto", "nats1", "nats3")]
    if bad:
        print(f"--tiers: unknown {', '.join(bad)}; choose from mosquitto, nats1, nats3", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="broker-tier-") as tmp:
        for name in tiers:
            with started(name, Path(tmp)) as tier:
                row = {"tier": name}
                # Sessions first, on the fresh broker: its memory before them is its own.
                if args.sessions:
                    row.update(sessions(tier, args.sessions, args.idle_s))
                row.update(throughput(tier, args.messages))
                row.update(puback_latency(tier, args.latency_samples))
                rows.append(row)
                if not args.json:
                    print(json.dumps(row), file=sys.stderr)
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"load_1m": load, "rows": rows}, indent=2))
        return 0
    print(f"broker tier, {args.messages} QoS 1 messages, {args.sessions} sessions (load {load:.2f})")
    head = [
        "tier",
        "msg/s",
        "broker CPU µs/msg",
        "PUBACK p50 ms",
        "PUBACK p99 ms",
        "sessions/s",
        "resumes/s",
        "broker CPU µs/resume",
        "idle CPU % core",
        "sessions MB",
    ]
    keys = [
        "tier",
        "msg_per_s",
        "broker_cpu_us_per_msg",
        "puback_p50_ms",
        "puback_p99_ms",
        "sessions_opened_per_s",
        "resumes_per_s",
        "broker_cpu_us_per_resume",
        "idle_cpu_pct_core",
        "session_rss_mb",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "-")) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
