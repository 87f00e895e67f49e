"""Shared helpers of the edge benchmarks: private servers, an edge subprocess, publishers
in processes of their own, and peak RSS. Everything runs on loopback addresses only."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hil.services import (  # noqa: E402
    InfluxDBServer,
    MosquittoServer,
    free_port,  # noqa: E402, F401  (re-exported for the edge benches)
)
from tests.support.edge_process import EdgeProcess, v1_sink, write_config  # noqa: E402, F401
from tests.support.metrics import metric  # noqa: E402, F401
from tests.support.processes import children  # noqa: E402, F401
from tests.support.site import DISTRICT, ZONE  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402, F401

URBANSENSE = str(Path(sys.executable).parent / "urbansense")


class Workspace:
    """A temp folder with a private Mosquitto and InfluxDB; removed on exit."""

    def __init__(self, keep: bool = False, broker_inflight: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="urbansense-bench-"))
        self.keep = keep
        # broker_inflight: Mosquitto's max_inflight_messages in place of the deployed 100
        # (a later line of the config file wins).
        extra = "max_queued_bytes 0" + (
            f"\nmax_inflight_messages {broker_inflight}" if broker_inflight else ""
        )
        self.mosquitto = MosquittoServer(self.dir / "mosquitto", extra_config=extra)
        self.influx = InfluxDBServer(self.dir / "influxdb")

    def __enter__(self) -> Workspace:
        self.mosquitto.start()
        self.influx.start()
        return self

    def __exit__(self, *exc) -> None:
        for s in (self.mosquitto, self.influx):
            try:
                s.stop()
            except Exception:
                pass
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def payloads(
    n: int, nodes: int = 500, prefix: str = "b", age: bool = False, start_ms: int | None = None
) -> list[tuple[str, bytes]]:
    from protocols import codec

    base = start_ms if start_ms is not None else int(time.time() * 1000) - 3_600_000
    out = []
    for i in range(n):
        node = f"{prefix}-{i % nodes:04d}"
        fields = {
            "pm25": float(i % 500),
            "pm10": float(i % 700),
            "uptime_s": float(i),
            "battery_v": 3.6,
            "rssi": -70.0,
        }
        kw = {"age_ms": 1000} if age else {"ts": base + i}
        out.append(
            (
                f"city/v1/{DISTRICT}/{ZONE}/{node}/telemetry",
                codec.encode_reading(node, "air", 1, i // nodes, fields, **kw),
            )
        )
    return out


def _publish_proc(port: int, client_id: str, messages, rate: float | None, ready, go) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    ready.set()
    go.wait()
    t0 = time.monotonic()
    infos = []
    for i, (t, p) in enumerate(messages):
        infos.append(c.publish(t, p, qos=1))
        if rate and i % 20 == 19:
            ahead = (i + 1) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        if len(infos) > 5000:
            infos[0].wait_for_publish(60)
            infos = infos[-5000:]
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def publish(
    port: int, messages, processes: int = 2, rate: float | None = None, client_prefix: str = "bench-pub"
) -> float:
    """Publish with several processes (QoS 1, every PUBACK awaited); returns seconds taken."""
    ctx = mp.get_context("fork")
    ready = [ctx.Event() for _ in range(processes)]
    go = ctx.Event()
    share = [messages[i::processes] for i in range(processes)]
    procs = [
        ctx.Process(
            target=_publish_proc,
            args=(port, f"{client_prefix}-{i}", share[i], rate / processes if rate else None, ready[i], go),
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    for r in ready:
        r.wait(30)
    t0 = time.monotonic()
    go.set()
    for p in procs:
        p.join()
    return time.monotonic() - t0


def publish_background(
    port: int, messages, processes: int = 1, rate: float | None = None, client_prefix: str = "bench-bg"
):
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=publish, args=(port, messages, processes, rate, client_prefix))
    proc.start()
    return proc


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def db_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            total += p.stat().st_size
    return total


def used_bytes(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size
    finally:
        conn.close()
