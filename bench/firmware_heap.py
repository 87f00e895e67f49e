"""Heap of a sim node for every kind, under the MicroPython unix port.

For each kind, three duty cycles against a private Mosquitto and an edge stand-in that
answers every reading with a receipt (tests/support/edge_standin.py), as the edge does after
its commit: an ordinary one, one that replays 30 readings queued in flash during a
network cut (the heaviest moment: a batch is built and sent), and the wake after it,
which reads the receipt for them and takes them off the queue. Figures:

- peak live heap: the most gc.mem_alloc() showed right after a gc.collect() at the
  node's checkpoints (after sampling, before each publish, before sleep);
- smallest heap that works: the smallest `-X heapsize` (4 KB steps) with which the
  ordinary cycle and the replay complete (the replay then also reads the retained receipt
  left by the earlier runs, which covers all it sends), found by bisection.

The unix port is 64-bit: object pointers take 8 bytes, twice what they take on an ESP32
or RP2040, so these figures are higher than the same firmware needs on a board.

    .venv/bin/python bench/firmware_heap.py [--bundle DIR]

--bundle measures a bundle built elsewhere (`hil.sim_build.build_bundle` run in another
checkout), e.g. the firmware before a change.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil.services import MosquittoServer  # noqa: E402
from hil.sim import SLEEP_EXIT, node_config, write_json_atomic  # noqa: E402
from hil.sim_build import build_bundle, run_once, sleep_as_asked  # noqa: E402
from protocols.catalog import KINDS  # noqa: E402
from tests.support.edge_standin import ReceiptEdge  # noqa: E402

QUEUED = 30
INTERVAL_S = 0.2  # short, so that every run is a wake with a sample due


def run_cycle(bundle: Path, flash: Path, heap_kb: int) -> tuple[bool, int]:
    proc = run_once(bundle, flash, f"{heap_kb}k")
    sleep_as_asked(flash)
    peak = 0
    for line in proc.stdout.splitlines():
        if "heap_peak=" in line:
            peak = int(line.rsplit("=", 1)[1])
    ok = proc.returncode == SLEEP_EXIT and "published" in proc.stdout
    return ok, peak


def prepare(bundle: Path, base: Path, kind: str, broker: MosquittoServer) -> tuple[Path, Path]:
    """Two flash folders: one fresh, one with QUEUED readings waiting in its queue."""
    fresh = base / f"{kind}-fresh"
    fresh.mkdir()
    cfg = node_config(
        f"heap-{kind}",
        kind,
        "xuhui",
        "bench",
        broker.host,
        broker.port,
        INTERVAL_S,
        schedule="duty-cycled",
        seed=1,
    )
    (fresh / "config.json").write_text(json.dumps(cfg))
    write_json_atomic(fresh / "control.json", {"stimuli": {}, "net": "up"})
    queued = base / f"{kind}-queued"
    shutil.copytree(fresh, queued)
    write_json_atomic(queued / "control.json", {"stimuli": {}, "net": "down"})
    for _ in range(QUEUED):
        run_cycle(bundle, queued, 512)
    write_json_atomic(queued / "control.json", {"stimuli": {}, "net": "up"})
    return fresh, queued


def works(bundle: Path, fresh: Path, queued: Path, heap_kb: int, scratch: Path) -> bool:
    for src in (fresh, queued):
        trial = scratch / f"{src.name}-{heap_kb}"
        shutil.copytree(src, trial)
        ok, _ = run_cycle(bundle, trial, heap_kb)
        shutil.rmtree(trial)
        if not ok:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a bundle built elsewhere (default: this checkout's)")
    args = parser.parse_args()
    bundle = args.bundle or build_bundle(Path(tempfile.mkdtemp()) / "bundle")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        broker = MosquittoServer(base / "broker")
        broker.start()
        edge = ReceiptEdge(broker.host, broker.port, zone="bench")
        try:
            print(
                f"{'kind':8} {'peak live heap, ordinary cycle':>31} {'peak live heap, replay of 30':>30} "
                f"{'the wake after, receipt':>24} {'smallest -X heapsize that works':>33}"
            )
            for kind in KINDS:
                fresh, queued = prepare(bundle, base, kind, broker)
                trial = base / "peak"
                shutil.copytree(fresh, trial)
                _, peak_fresh = run_cycle(bundle, trial, 512)
                shutil.rmtree(trial)
                shutil.copytree(queued, trial)
                _, peak_replay = run_cycle(bundle, trial, 512)
                # The receipt for the replay (retained at the broker) is read at the next wake.
                edge.wait_confirmed(f"heap-{kind}", [(1, seq) for seq in range(QUEUED + 1)])
                _, peak_receipt = run_cycle(bundle, trial, 512)
                shutil.rmtree(trial)
                low, high = 32, 256  # KB: fails at low (assumed), works at high
                while high - low > 4:
                    mid = (low + high) // 2 // 4 * 4
                    if works(bundle, fresh, queued, mid, base):
                        high = mid
                    else:
                        low = mid
                print(
                    f"{kind:8} {peak_fresh / 1024:>27.1f} KB {peak_replay / 1024:>26.1f} KB "
                    f"{peak_receipt / 1024:>21.1f} KB {high:>29} KB"
                )
        finally:
            edge.close()
            broker.stop()
    print("(MicroPython unix port, 64-bit; goal on a board: peak under 48 KB)")


if __name__ == "__main__":
    main()
