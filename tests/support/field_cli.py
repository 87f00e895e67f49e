"""The technician's commands as the field tests run them: `node flash` of a node config onto
a port, `node provision` of an inventory, and the site file and inventory they read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.cli import urbansense

INVENTORY_HEADER = "node,district,zone,kind,port"


def flash(
    port: str, config: Path, bundle: Path, *extra: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`urbansense node flash` with a birth wait of 60 s unless `extra` says otherwise."""
    return urbansense(*flash_args(port, config, bundle, *extra), timeout=timeout)


def flash_args(port: str, config: Path, bundle: Path, *extra: str) -> list[str]:
    return [
        "node",
        "flash",
        "--port",
        port,
        "--node",
        str(config),
        "--bundle",
        str(bundle),
        "--timeout",
        "60",
        *extra,
    ]


def provision(
    inventory: Path,
    bundle: Path,
    results: Path,
    *extra: str,
    defaults: Path | None = None,
    stdin: str | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    return urbansense(
        *provision_args(inventory, bundle, results, *extra, defaults=defaults), stdin=stdin, timeout=timeout
    )


def provision_args(
    inventory: Path, bundle: Path, results: Path, *extra: str, defaults: Path | None = None
) -> list[str]:
    return [
        "node",
        "provision",
        "--inventory",
        str(inventory),
        *(["--defaults", str(defaults)] if defaults else []),
        "--bundle",
        str(bundle),
        "--results",
        str(results),
        "--timeout",
        "60",
        *extra,
    ]


def site(path: Path, broker_port: int) -> Path:
    """A site file for virtual boards on this machine's broker."""
    path.write_text(json.dumps({"platform": "sim", "broker": {"host": "127.0.0.1", "port": broker_port}}))
    return path


def inventory(path: Path, rows: list[str], header: str = INVENTORY_HEADER) -> Path:
    path.write_text("".join(f"{line}\n" for line in (header, *rows)))
    return path


def statuses(results: Path) -> dict[str, str]:
    """Node -> status in a results folder's results.json."""
    return {n["node"]: n["status"] for n in json.loads((results / "results.json").read_text())["nodes"]}
