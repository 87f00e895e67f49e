"""Edge aggregator processes as the demo and the HIL runner run them: one
`urbansense edge run --config FILE` per zone, each in its own session, with its
Prometheus metrics scraped for the live view."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hil.services import ManagedServer


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


def edge_config(
    site: EdgeSite,
    broker: tuple[str, int],
    influx_url: str,
    state_dir: Path,
    metrics_port: int,
    servers: list[str] | None = None,
) -> str:
    """The edge's TOML config: raw data to the district database, rollups to the city one.
    `servers`: the members of a NATS tier, in place of the one broker."""
    if servers:
        where = f'servers = [{", ".join(_toml_str(s) for s in servers)}]\nbroker = "nats"'
    else:
        where = f"host = {_toml_str(broker[0])}\nport = {broker[1]}"
    return f"""\
[site]
district = {_toml_str(site.district)}
zone = {_toml_str(site.zone)}

[mqtt]
{where}
client_id = {_toml_str(site.name)}

[buffer]
path = {_toml_str(str(state_dir / "buffer.db"))}
max_bytes = 200000000

[[sink]]
name = "district"
url = {_toml_str(influx_url)}
api = "v1"
database = {_toml_str(f"district_{site.district}")}
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


class EdgeProcess(ManagedServer):
    """One edge aggregator process, run like the other servers (hil/services.py): its own
    session, its log in its folder, ready once its metrics endpoint answers."""

    name = "edge"

    def __init__(
        self,
        site: EdgeSite,
        workdir: Path,
        broker: tuple[str, int],
        influx_url: str,
        extra: str = "",
        servers: list[str] | None = None,
    ) -> None:
        super().__init__(workdir)  # the port is the metrics endpoint's
        self.site = site
        self.config_path = self.workdir / "edge.toml"
        # `extra`: more TOML sections (the demo's [alertmanager], say).
        self.config_path.write_text(
            edge_config(site, broker, influx_url, self.workdir, self.port, servers) + extra
        )

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cli.main", "edge", "run", "--config", str(self.config_path)]

    def is_ready(self) -> bool:
        return self._metrics_text() is not None

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
    found = [
        v
        for k, v in samples.items()
        if all(w in k.split("{")[0] for w in words) and not k.split("{")[0].endswith("_created")
    ]
    return sum(found) if found else None
