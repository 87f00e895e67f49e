"""Awake time per duty cycle of a sim node (boot to PUBACK to sleep), for every kind,
against a private Mosquitto on loopback.

Two figures per kind: the node's own count (from the start of its duty cycle to the
moment it goes to sleep, printed as `awake N ms`) and the wall time of the whole process
(interpreter start, loading the compiled modules, boot, connect, sample, publish,
DISCONNECT, exit), which is what a real reset-to-sleep cycle costs.

    .venv/bin/python bench/firmware_awake.py [--cycles 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil.services import MosquittoServer  # noqa: E402
from hil.sim import DEFAULT_HEAP, SLEEP_EXIT, node_config  # noqa: E402
from hil.sim_build import build_bundle, run_once, sleep_as_asked  # noqa: E402
from protocols.catalog import KINDS  # noqa: E402

INTERVAL_S = 0.3  # short: every wake of the run is a full cycle with a sample due


def cycle(bundle: Path, flash: Path) -> tuple[float, int]:
    start = time.perf_counter()
    proc = run_once(bundle, flash, DEFAULT_HEAP)
    wall = (time.perf_counter() - start) * 1000
    sleep_as_asked(flash)
    if proc.returncode != SLEEP_EXIT:
        raise SystemExit(f"node exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    awake = next(int(line.split()[2]) for line in proc.stdout.splitlines() if " awake " in line)
    return wall, awake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    bundle = build_bundle(Path(tempfile.mkdtemp()) / "bundle")
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoServer(Path(tmp) / "broker")
        broker.start()
        try:
            print(f"{'kind':8} {'node awake ms (median/max)':>28} {'process wall ms (median/max)':>30}")
            for kind in KINDS:
                flash = Path(tmp) / kind
                flash.mkdir()
                cfg = node_config(
                    f"bench-{kind}",
                    kind,
                    "xuhui",
                    "bench",
                    broker.host,
                    broker.port,
                    INTERVAL_S,
                    schedule="duty-cycled",
                    seed=1,
                )
                (flash / "config.json").write_text(json.dumps(cfg))
                walls, awakes = [], []
                for _ in range(args.cycles):
                    wall, awake = cycle(bundle, flash)
                    walls.append(wall)
                    awakes.append(awake)
                print(
                    f"{kind:8} {statistics.median(awakes):>20.0f} / {max(awakes):<6} "
                    f"{statistics.median(walls):>21.0f} / {max(walls):<6.0f}"
                )
        finally:
            broker.stop()
    print(f"({args.cycles} cycles per kind, heap {DEFAULT_HEAP}, loopback broker; goal < 1500 ms)")


if __name__ == "__main__":
    main()
