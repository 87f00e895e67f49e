"""Awake time per duty cycle of a sim node (boot to PUBACK to sleep), for every kind,
against a private Mosquitto on loopback, with an edge stand-in that answers every reading
with a receipt (tests/support/edge_standin.py), as the edge does after its commit.

Two figures per kind: the node's own count (from the start of its duty cycle to the
moment it goes to sleep, printed as `awake N ms`) and the wall time of the whole process
(interpreter start, loading the compiled modules, boot, connect, sample, publish, read the
receipts, DISCONNECT, apply them, exit), which is what a real reset-to-sleep cycle costs.

    .venv/bin/python bench/firmware_awake.py [--cycles 20] [--no-edge] [--bundle DIR]

--no-edge: no receipts at all (the node keeps its queue and resends it after 2, 4, 8...
intervals). --bundle measures a bundle built elsewhere (`hil.sim_build.build_bundle` run
in another checkout), e.g. the firmware before a change.
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
from tests.support.edge_standin import ReceiptEdge  # noqa: E402

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
    parser.add_argument("--no-edge", action="store_true", help="no receipts at all")
    parser.add_argument("--bundle", type=Path, help="a bundle built elsewhere (default: this checkout's)")
    args = parser.parse_args()
    bundle = args.bundle or build_bundle(Path(tempfile.mkdtemp()) / "bundle")
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoServer(Path(tmp) / "broker")
        broker.start()
        edge = None if args.no_edge else ReceiptEdge(broker.host, broker.port, zone="bench")
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
            if edge is not None:
                edge.close()
            broker.stop()
    receipts = "no edge" if args.no_edge else "receipts from an edge stand-in"
    print(
        f"({args.cycles} cycles per kind, heap {DEFAULT_HEAP}, loopback broker, {receipts}; goal < 1500 ms)"
    )


if __name__ == "__main__":
    main()
