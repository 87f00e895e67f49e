"""A fleet inventory (CSV, one row per node) and the result files of a provisioning run.

Columns: `node`, `district`, `zone`, `kind`, `port` (required), then any config key as an
override, dotted for nested keys (`interval_s`, `schedule`, `platform`, `broker.host`,
`broker.port`, `wifi.ssid`, ...). An empty cell leaves the site defaults (`--defaults
site.json`) as they are. Keep secrets in the defaults file, not in the CSV.

A column that is no config key (a misspelt `intervall_s`) refuses the whole file, and an
error every row has (no site defaults given) is said once: both would otherwise fail each
row alike.

Results: `results.json` and `results.csv` in the results folder, rewritten after every node,
so an interrupted run loses nothing and `--resume` skips the nodes already live. A new run
merges into what the folder holds, by node: a node this run did not touch keeps its earlier
record."""

from __future__ import annotations

import copy
import csv
import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from field.flash import Outcome
from field.node_config import BrokerConfig, ConfigError, NodeConfig, WifiConfig, parse, set_dotted
from protocols.thresholds import THRESHOLDS

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
    error: str = ""  # a row that cannot be flashed, and why ("fleet.csv line 3: ...")
    problem: str = ""  # the same without the row's place: rows with one problem say it once

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


def _columns() -> list[str]:
    """Every column an inventory may have (thresholds: those of every kind)."""
    nested = {"wifi": WifiConfig, "broker": BrokerConfig}
    columns = list(REQUIRED)
    for name in NodeConfig.model_fields:
        if name in nested:
            columns += [f"{name}.{key}" for key in nested[name].model_fields]
        elif name == "thresholds":
            columns += sorted({f"thresholds.{t}" for kind in THRESHOLDS.values() for t in kind})
        elif name not in columns:
            columns.append(name)
    return columns


def check_header(path: Path, header: list[str]) -> None:
    """Refuse a column that is no config key: every row would carry the same mistake."""
    columns = _columns()
    for key in header:
        if not key or key in columns or key.startswith("calibration."):
            continue
        close = difflib.get_close_matches(key, columns, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(
            f"{path}: unknown column {key!r}{hint}; columns are node, district, zone, kind, port "
            "and config keys, dotted for nested ones (deploy/field/README.md)"
        )


def common_problem(rows: list[FleetRow]) -> str | None:
    """The problem every row has, when all of them fail alike (said once, not per row)."""
    problems = {row.problem for row in rows}
    if len(rows) > 1 and all(row.config is None for row in rows) and len(problems) == 1:
        return problems.pop()
    return None


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
            check_header(path, header)
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
            fleet.append(FleetRow(number, port, None, str(err), str(err).removeprefix(f"{where}: ")))
    return fleet


def merge(results: dict[str, dict], outcome: Outcome) -> None:
    """Record an outcome by node. One that left the board untouched (a bad row, no port, the
    wrong board, a skip) does not replace what an earlier run recorded for that node: the
    node on the street is still what that record says."""
    if outcome.touched or outcome.node not in results:
        results[outcome.node] = outcome.to_dict()


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
        "failed": sum(1 for n in nodes if n.get("status") == "failed"),
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
