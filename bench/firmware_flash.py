"""Flash writes per reading of a sim node, duty-cycled and always-on, against a private
Mosquitto with an edge stand-in that answers every reading with a receipt
(tests/support/edge_standin.py), and with no edge at all (nothing ever confirmed).

A write is a file opened for writing or appending: a record appended to a queue segment,
a queue head (written whole, tmp + rename), or another state file (boot counter,
counters, commands). A small module started before the node counts them by wrapping
`open`; segment deletions and renames are not counted (metadata, not data). The sim keeps
RTC memory in rtc.json: on an ESP32 that is RTC RAM, not flash (an RP2040 keeps it in a
flash file), so it is shown apart.

    .venv/bin/python bench/firmware_flash.py [--wakes 30] [--readings 40] [--bundle DIR]

--bundle measures a bundle built elsewhere (`hil.sim_build.build_bundle` run in another
checkout), e.g. the firmware before a change.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil.services import MosquittoServer  # noqa: E402
from hil.sim import DEFAULT_HEAP, SLEEP_EXIT, write_json_atomic  # noqa: E402
from hil.sim_build import NODE_MICROPYPATH, build_bundle, install, node_argv  # noqa: E402
from tests.support.edge_standin import ReceiptEdge  # noqa: E402
from tests.support.fleet import site_node_config  # noqa: E402

# Loaded before the node (micropython -c): every open() for writing or appending is noted
# in flash.log, with the open the node does not see.
COUNTER = """
import builtins
_open = builtins.open
def _counting(path, mode="r", *args):
    if "w" in mode or "a" in mode:
        with _open("flash.log", "a") as log:
            log.write(path + "\\n")
    return _open(path, mode, *args)
builtins.open = _counting
"""
SIM_ONLY = ("wdt", "taken.log", "flash.log")  # the supervisor's and the harness's files
EMPTY_BAY = {"mag_delta_ut": 0.0, "mag_drift_ut": 0.0}


def category(path: str) -> str | None:
    path = path.removesuffix(".tmp")
    if path in SIM_ONLY:
        return None
    if path.startswith("queue/"):
        return "queue head" if path.endswith("/head") else "queue record"
    if path == "rtc.json":
        return "rtc memory"
    return "other state"


def flash_dir(base: Path, broker: MosquittoServer, node_id: str, schedule: str, interval_s: float) -> Path:
    flash = base / node_id
    flash.mkdir()
    cfg = site_node_config(broker, "parking", node_id, schedule, interval_s)
    (flash / "config.json").write_text(json.dumps(cfg))
    write_json_atomic(flash / "control.json", {"stimuli": EMPTY_BAY, "net": "up"})
    (flash / "flashcount.py").write_text(COUNTER)
    return flash


def argv() -> list[str]:
    cmd = node_argv(DEFAULT_HEAP)
    return cmd[:-1] + ["import flashcount\nimport main"]


def count(flash: Path) -> collections.Counter:
    writes: collections.Counter = collections.Counter()
    log = flash / "flash.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        kind = category(line)
        if kind:
            writes[kind] += 1
    return writes


def taken(flash: Path) -> int:
    path = flash / "taken.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def duty_cycled(bundle: Path, base: Path, broker: MosquittoServer, node_id: str, wakes: int) -> tuple:
    flash = flash_dir(base, broker, node_id, "duty-cycled", 0.2)
    install(bundle, flash)
    env = dict(os.environ, MICROPYPATH=NODE_MICROPYPATH)
    for _ in range(wakes):
        proc = subprocess.run(argv(), cwd=flash, env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode != SLEEP_EXIT:
            raise SystemExit(f"node exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        time.sleep(0.2)  # the interval: every wake takes a reading
    return count(flash), taken(flash)


def always_on(bundle: Path, base: Path, broker: MosquittoServer, node_id: str, readings: int) -> tuple:
    flash = flash_dir(base, broker, node_id, "always-on", 0.2)
    install(bundle, flash)
    env = dict(os.environ, MICROPYPATH=NODE_MICROPYPATH)
    proc = subprocess.Popen(argv(), cwd=flash, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while taken(flash) < readings and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # the last reading's receipt, and the head written after it
    finally:
        proc.kill()
        proc.wait()
    return count(flash), taken(flash)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wakes", type=int, default=30, help="duty cycles (one reading each)")
    parser.add_argument("--readings", type=int, default=40, help="readings of the always-on node")
    parser.add_argument("--bundle", type=Path, help="a bundle built elsewhere (default: this checkout's)")
    args = parser.parse_args()
    bundle = args.bundle or build_bundle(Path(tempfile.mkdtemp()) / "bundle")
    kinds = ("queue record", "queue head", "other state", "rtc memory")
    print(
        f"{'schedule':12} {'edge':9} {'readings':>8} "
        + " ".join(f"{k:>13}" for k in kinds)
        + f" {'flash/reading':>14}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        broker = MosquittoServer(base / "broker")
        broker.start()
        try:
            for with_edge in (True, False):
                edge = ReceiptEdge(broker.host, broker.port) if with_edge else None
                try:
                    tag = "receipts" if with_edge else "none"
                    runs = [
                        ("duty-cycled", *duty_cycled(bundle, base, broker, f"fl-dc-{tag}", args.wakes)),
                        ("always-on", *always_on(bundle, base, broker, f"fl-ao-{tag}", args.readings)),
                    ]
                finally:
                    if edge is not None:
                        edge.close()
                for schedule, writes, n in runs:
                    flash = sum(writes[k] for k in kinds[:3])
                    cells = " ".join(f"{writes[k] / n:>13.2f}" for k in kinds)
                    print(f"{schedule:12} {tag:9} {n:>8} {cells} {flash / n:>14.2f}")
        finally:
            broker.stop()
    print("(writes per reading; flash/reading leaves out rtc memory, RAM on an ESP32)")


if __name__ == "__main__":
    main()
