"""The edge as a real subprocess: write its TOML config, run `urbansense edge run` in a
session of its own (so SIGKILL is real), read its log, its buffer and its metrics."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from hil.services import free_port
from tests.support.cli import URBANSENSE
from tests.support.site import DISTRICT, ZONE
from tests.support.waiting import wait_for


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_config(
    folder: Path,
    *,
    mqtt_port: int,
    sinks: list[dict],
    client_id: str = "edge-test",
    mqtt_extra: dict | None = None,
    buffer: dict | None = None,
    metrics: bool = False,
    extra: dict | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sections = {
        "site": {"district": DISTRICT, "zone": ZONE},
        # A broker tier's member list (`servers`) stands in place of host/port.
        "mqtt": {
            **({} if "servers" in (mqtt_extra or {}) else {"host": "127.0.0.1", "port": mqtt_port}),
            "client_id": client_id,
            **(mqtt_extra or {}),
        },
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
    return {
        "name": name,
        "url": influx.url,
        "api": "v1",
        "database": database,
        "data": data,
        "batch_wait_ms": 20,
        "retry_min_s": 0.05,
        "retry_max_s": 1.0,
        **extra,
    }


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

    def start(self, wait_connected: bool = True) -> EdgeProcess:
        self.starts += 1
        before = self.connections()
        log = open(self.log_path, "ab")
        log.write(f"\n--- start {self.starts} ---\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [URBANSENSE, "edge", "run", "--config", str(self.config), "--log-format", "text"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
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

    def nodes(self) -> dict[str, dict]:
        """`urbansense nodes --json` of this edge, by node id."""
        proc = subprocess.run(
            [URBANSENSE, "nodes", "--config", str(self.config), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return {n["node"]: n for n in json.loads(proc.stdout)}

    def metrics_text(self) -> str:
        listen = tomllib.loads(self.config.read_text())["metrics"]["listen"]
        with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as resp:
            return resp.read().decode()


def started_edges(request) -> Iterator[Callable[[Path], EdgeProcess]]:
    """The body of an `edges` fixture: make edge subprocesses; every one still running is
    stopped after the test, and a failing test gets each edge's log printed."""
    started: list[EdgeProcess] = []

    def make(config: Path) -> EdgeProcess:
        edge = EdgeProcess(config)
        started.append(edge)
        return edge

    yield make
    failed = getattr(request.node, "rep_call", None)
    for edge in started:
        if edge.running():
            edge.stop()
        if failed is not None and failed.failed:
            print(f"\n--- {edge.config} log ---\n{edge.log_tail(80)}")
