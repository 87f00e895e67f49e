"""A fleet inventory (CSV, one row per node) and the result files of a provisioning run.

Columns: `node`, `district`, `zone`, `kind`, `port` (required), then any config key as an
override, dotted for nested keys (`interval_s`, `schedule`, `platform`, `broker.host`,
`broker.port`, `wifi.ssid`, ...). An empty cell leaves the site defaults (`--defaults
site.json`) as they are. Keep secrets in the defaults file, not in the CSV.

Results: `results.json` and `results.csv` in the results folder, rewritten after every node,
so an interrupted run loses nothing and `--resume` skips the nodes already live."""

from __future__ import annotations

import copy
import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from field.flash import Outcome
from field.node_config import ConfigError, NodeConfig, parse, set_dotted

REQUIRED = ("node", "district", "zone", "kind", "port")
RESULT_COLUMNS = ("node", "port", "status", "reason", "fw", "boot", "reset", "bundle", "seconds")
_INTEGER_KEYS = {"broker.port", "queue_max", "keepalive_s", "seed"}
_NUMBER_KEYS = {"interval_s"}
_BOOL_KEYS = {"broker.tls", "hil"}


@dataclass(frozen=True)
class FleetRow:
    line: int
    port: str
    config: NodeConfig | None
    error: str = ""  # a row that cannot be flashed, and why

    @property
    def node(self) -> str:
        return self.config.node if self.config else f"line-{self.line}"


def _value(key: str, text: str, where: str) -> Any:
    try:
        if key in _INTEGER_KEYS:
            return int(text)
        if key in _NUMBER_KEYS:
            return float(text)
    except ValueError:
        raise ConfigError(f"{where}: {key}: {text!r} is not a number") from None
    if key in _BOOL_KEYS:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{where}: {key}: {text!r} is not true/false")
        return text.lower() in ("true", "1", "yes")
    if key.startswith(("thresholds.", "calibration.")):
        try:
            return float(text)
        except ValueError:
            return text
    return text


def read(path: Path, defaults: dict) -> list[FleetRow]:
    """Every row with its config (or the reason it is unusable). A broken file raises."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise ConfigError(
                    f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)})"
                )
            rows = list(reader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    fleet: list[FleetRow] = []
    seen: set[str] = set()
    for number, raw in enumerate(rows, start=2):
        where = f"{path.name} line {number}"
        cells = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        port = cells.pop("port", "")
        data = copy.deepcopy(defaults)
        try:
            for key, text in cells.items():
                if key and text:
                    set_dotted(data, key, _value(key, text, where))
            config = parse(data, where)
            if config.node in seen:
                raise ConfigError(f"{where}: node {config.node} appears twice")
            if not port:
                raise ConfigError(f"{where}: port is empty")
            seen.add(config.node)
            fleet.append(FleetRow(number, port, config))
        except ConfigError as err:
            fleet.append(FleetRow(number, port, None, str(err)))
    return fleet


def load_results(folder: Path) -> dict[str, dict]:
    """Earlier outcomes by node (empty if there are none)."""
    path = folder / "results.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise ConfigError(f"{path}: not valid JSON ({err}): move it away to start afresh") from None
    return {entry["node"]: entry for entry in data.get("nodes", []) if "node" in entry}


def write_results(folder: Path, inventory: Path, results: dict[str, dict]) -> None:
    """results.json and results.csv, each replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    nodes = list(results.values())
    doc = {
        "inventory": str(inventory),
        "nodes": nodes,
        "live": sum(1 for n in nodes if n.get("status") == "live"),
        "failed": sum(1 for n in nodes if n.get("status") != "live"),
    }
    _replace(folder / "results.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp = folder / "results.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for entry in nodes:
            writer.writerow({k: ("" if entry.get(k) is None else entry.get(k)) for k in RESULT_COLUMNS})
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(folder / "results.csv")


def _replace(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def row_failure(row: FleetRow) -> Outcome:
    return Outcome(node=row.node, port=row.port, status="failed", reason=row.error)
