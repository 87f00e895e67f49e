"""The heap budget of a duty-cycled node, for every kind, through its heaviest moment too:
replaying, in batches, the readings it queued in flash during a network cut. A node that
outgrows BUDGET fails here (a MemoryError, or batches shrunk after one).

BUDGET is 72 KB, one step above what bench/firmware_heap.py finds sufficient (64 or 68
KB, by run): near that limit heap fragmentation makes the result vary, and a
test must not. The goal of issue 4 is 64 KB for every schedule and for command handling
too; virtual nodes still run with hil.sim.DEFAULT_HEAP until it is met."""
from __future__ import annotations

import json
import time

import pytest

from hil import micropython
from hil.sim import KINDS, SLEEP_EXIT, node_config, write_json_atomic

from .fleet_helpers import node_log, readings

BUDGET = "72k"
QUEUED = 12        # more than one batch (node/app.py BATCH_ITEMS)


def cycle(bundle_main: str, flash, node_path: str) -> str:
    """One wake: boot, sample, (connect, publish,) deep sleep. Returns the console."""
    proc = micropython.run([bundle_main], heap=BUDGET,
                           micropypath=node_path, cwd=flash)
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == SLEEP_EXIT, out
    assert "MemoryError" not in out and "error heap" not in out, out
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_duty_cycled_node_replays_its_queue_within_the_budget(kind, tmp_path, bundle,
                                                              node_path, mosquitto):
    node_id = f"heap-{kind[0]}"
    cfg = node_config(node_id, kind, "xuhui", "caohejing", mosquitto.host, mosquitto.port,
                      60, schedule="duty-cycled", seed=1)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    main = str(bundle / "main.py")
    log = node_log(mosquitto, node_id)
    try:
        write_json_atomic(tmp_path / "control.json", {"stimuli": {}, "net": "down"})
        for _ in range(QUEUED):
            cycle(main, tmp_path, node_path)
        write_json_atomic(tmp_path / "control.json", {"stimuli": {}, "net": "up"})
        out = cycle(main, tmp_path, node_path)
        assert f"published tm={QUEUED + 1} " in out, out
        deadline = time.monotonic() + 10      # a hang guard for the broker log
        while len(readings(log)) < QUEUED + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        log.close()
    assert readings(log) == [(1, seq) for seq in range(QUEUED + 1)]
