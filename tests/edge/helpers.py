"""Helpers for the edge tests: write a config, run `urbansense edge run` as a real
subprocess (so SIGKILL is real), publish readings with known identities, count points."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.services import free_port
from protocols import codec

DISTRICT = "xuhui"
ZONE = "caohejing"
URBANSENSE = str(Path(sys.executable).parent / "urbansense")


def now_ms() -> int:
    return int(time.time() * 1000)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1,
             what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_config(folder: Path, *, mqtt_port: int, sinks: list[dict], client_id: str = "edge-test",
                 mqtt_extra: dict | None = None, buffer: dict | None = None,
                 metrics: bool = False, extra: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sections = {
        "site": {"district": DISTRICT, "zone": ZONE},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": client_id, **(mqtt_extra or {})},
        "buffer": {"path": "state/buffer.db", **(buffer or {})},
        "metrics": {"listen": f"127.0.0.1:{free_port()}" if metrics else ""},
        **(extra or {}),
    }
    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        out += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        out.append("")
    for sink in sinks:
        out.append("[[sink]]")
        out += [f"{k} = {toml_value(v)}" for k, v in sink.items()]
        out.append("")
    path = folder / "edge.toml"
    path.write_text("\n".join(out))
    return path


def v1_sink(name: str, influx, database: str, data: str = "raw", **extra) -> dict:
    return {"name": name, "url": influx.url, "api": "v1", "database": database, "data": data,
            "batch_wait_ms": 20, "retry_min_s": 0.05, "retry_max_s": 1.0, **extra}


class EdgeProcess:
    """`urbansense edge run --config FILE` in a subprocess of its own."""

    def __init__(self, config: Path) -> None:
        self.config = Path(config)
        self.log_path = self.config.parent / "edge.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def sessions(self) -> int:
        """MQTT sessions the edge opens (events get one of their own)."""
        from edge.config import load_config
        from edge.ingest import split_filters
        events, others = split_filters(load_config(self.config).subscriptions())
        return int(bool(events)) + int(bool(others))

    def connections(self) -> int:
        return self.log_text().count("mqtt connected")

    @property
    def db_path(self) -> Path:
        return self.config.parent / "state" / "buffer.db"

    def start(self, wait_connected: bool = True) -> "EdgeProcess":
        self.starts += 1
        before = self.connections()
        log = open(self.log_path, "ab")
        log.write(f"\n--- start {self.starts} ---\n".encode())
        log.flush()
        self.proc = subprocess.Popen([URBANSENSE, "edge", "run", "--config", str(self.config),
                                      "--log-format", "text"],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        if wait_connected:
            wanted = before + self.sessions
            wait_for(lambda: self.connections() >= wanted or self._dead(), 30, what="edge to connect")
            assert not self._dead(), self.log_tail()
        return self

    def _dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if not self.running():
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def query(self, sql: str, params: tuple = ()) -> list:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def dead_letters(self) -> list[tuple]:
        return self.query("SELECT reason, topic, payload, source FROM dead_letters ORDER BY id")

    def metrics_text(self) -> str:
        import tomllib
        listen = tomllib.loads(self.config.read_text())["metrics"]["listen"]
        with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as resp:
            return resp.read().decode()


class Publisher:
    """A paho client that publishes QoS1 and waits for every PUBACK."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=True)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False):
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_all(self, messages: list[tuple[str, bytes]], timeout: float = 60) -> None:
        infos = [self.publish(t, p) for t, p in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not acknowledge a publish"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def topic(node: str, channel: str) -> str:
    return f"city/v1/{DISTRICT}/{ZONE}/{node}/{channel}"


def readings(n: int, nodes: int = 10, kind: str = "air", boot: int = 1, start_ms: int | None = None,
             seq0: int = 0) -> list[tuple[str, bytes]]:
    """n readings spread over `nodes` nodes, each with a distinct (node, boot, seq) and ts."""
    base = (start_ms if start_ms is not None else now_ms() - 60_000)
    out = []
    for i in range(n):
        node = f"{kind[0]}-{i % nodes:04d}"
        seq = seq0 + i // nodes
        fields = {"pm25": float(i % 300), "battery_v": 3.6} if kind == "air" else {"occupied": bool(i % 2)}
        out.append((topic(node, "telemetry"),
                    codec.encode_reading(node, kind, boot, seq, fields, ts=base + i)))
    return out


def influx_count(influx, db: str, measurement: str = "air", field: str = "pm25") -> int:
    try:
        return influx.count(measurement, db, field)
    except Exception:
        return -1


def counted_readings(n: int, nodes: int = 10, prefix: str = "f",
                     min_age_ms: int = 0) -> list[tuple[str, bytes]]:
    """n air readings whose `uptime_s` field is their index, all with `age_ms`.

    `age_ms` makes the test strict: the edge stamps arrival - age_ms, so a reading written
    a second time after a redelivery would get another timestamp and show up as an extra
    point. Ages fall by 2 s per reading, so two readings of one node are 20 s apart and
    never merge, even when one is redelivered late."""
    out = []
    for i in range(n):
        node = f"{prefix}-{i % nodes:04d}"
        fields = {"pm25": float(i % 500), "uptime_s": float(i), "battery_v": 3.6}
        out.append((topic(node, "telemetry"),
                    codec.encode_reading(node, "air", 1, i // nodes, fields,
                                         age_ms=min_age_ms + (n - i) * 2000)))
    return out


def uptimes(influx, db: str, measurement: str = "air") -> list[float]:
    try:
        series = influx.query(f'SELECT "uptime_s" FROM "{measurement}"', db=db)
    except Exception:
        return []
    return sorted(v[1] for s in series for v in s["values"])


def publish_paced(pub: "Publisher", messages: list[tuple[str, bytes]], per_second: float,
                  chunk: int = 20) -> "threading.Thread":
    """Publish in the background at about `per_second`, waiting for every PUBACK."""
    import threading

    def run():
        pause = chunk / per_second
        for start in range(0, len(messages), chunk):
            t0 = time.monotonic()
            pub.publish_all(messages[start:start + chunk], timeout=120)
            time.sleep(max(0.0, pause - (time.monotonic() - t0)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def metric(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample in Prometheus text, e.g. metric(t, "x_total", 'sink="city"')."""
    import re
    key = re.escape(name + ("{" + labels + "}" if labels else ""))
    m = re.search(rf"^{key} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None
