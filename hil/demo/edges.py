"""Edge aggregator processes as the demo and the HIL runner run them: one
`urbansense edge run --config FILE` per zone, each in its own process group so that
stopping it also stops anything it started, with its Prometheus metrics scraped for the
live view."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hil.services import ServiceError, free_port


@dataclass(frozen=True)
class EdgeSite:
    district: str
    zone: str

    @property
    def name(self) -> str:
        return f"edge-{self.district}-{self.zone}"


def _toml_str(text: str) -> str:
    # A JSON string of printable text is a valid TOML basic string.
    return json.dumps(text)


def edge_config(site: EdgeSite, broker: tuple[str, int], influx_url: str, state_dir: Path,
                metrics_port: int) -> str:
    """The edge's TOML config: raw data to the district database, rollups to the city one."""
    return f"""\
[site]
district = {_toml_str(site.district)}
zone = {_toml_str(site.zone)}

[mqtt]
host = {_toml_str(broker[0])}
port = {broker[1]}
client_id = {_toml_str(site.name)}

[buffer]
path = {_toml_str(str(state_dir / 'buffer.db'))}
max_bytes = 200000000

[[sink]]
name = "district"
url = {_toml_str(influx_url)}
api = "v1"
database = {_toml_str(f'district_{site.district}')}
data = "raw"

[[sink]]
name = "city"
url = {_toml_str(influx_url)}
api = "v1"
database = "city"
data = "rollup"

[metrics]
listen = "127.0.0.1:{metrics_port}"
"""


class EdgeProcess:
    """One edge aggregator process."""

    def __init__(self, site: EdgeSite, workdir: Path, broker: tuple[str, int], influx_url: str) -> None:
        self.site = site
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.metrics_port = free_port()
        self.config_path = self.workdir / "edge.toml"
        self.config_path.write_text(edge_config(site, broker, influx_url, self.workdir,
                                                self.metrics_port))
        self.log_path = self.workdir / "edge.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "edge.cli.main", "edge", "run", "--config", str(self.config_path)]

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> "EdgeProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.workdir,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"{self.site.name} exited with {self.process.returncode} on start: "
                                   + self.log_tail(5).replace("\n", " | "))
            if self._metrics_text() is not None:
                return self
            time.sleep(0.1)
        self.kill()
        raise ServiceError(f"{self.site.name}: metrics endpoint not up after {timeout:.0f} s: "
                           + self.log_tail(5).replace("\n", " | "))

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the whole group (the edge finishes the commit in hand), then SIGKILL."""
        if not self.running():
            return
        assert self.process is not None
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait()

    def _signal_group(self, sig: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # -- metrics
    def _metrics_text(self) -> str | None:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=1.0) as resp:
                return resp.read().decode()
        except (OSError, urllib.error.URLError):
            return None

    def metrics(self) -> dict[str, float]:
        """Every sample of the metrics endpoint as {name{labels}: value}; empty if it is down."""
        text = self._metrics_text()
        if text is None:
            return {}
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return samples


def metric_sum(samples: dict[str, float], *words: str) -> float | None:
    """Sum of the samples whose name holds every word (e.g. "buffer", "depth"), or None.

    The view looks metrics up by words rather than exact names so that it keeps working
    if the edge adds labels (per sink, per reason) to a metric."""
    found = [v for k, v in samples.items()
             if all(w in k.split("{")[0] for w in words) and not k.split("{")[0].endswith("_created")]
    return sum(found) if found else None
