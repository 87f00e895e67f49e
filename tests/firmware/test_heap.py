"""The node's heap budget, against a real broker, for every kind.

- Duty-cycled: the whole cycle (boot, sample, connect, publish, queue, deep sleep) in
  64 KB, through its heaviest moments too: replaying, in batches, the readings queued in
  flash during a network cut, and a wake that runs commands (`set` brings the config
  validator back, `sample` the sampling phase).
- Always-on: connected, sampling for several intervals and answering a command in
  ALWAYS_ON_BUDGET (96 KB); and sampling in PARKING_BUDGET (80 KB; air and manhole 88 KB), where the
  node parks its link while it samples (node/always_on.py). The always-on schedule
  keeps asyncio and its own loop resident beside whichever phase runs, and its heap
  fragments as phases come and go, which a duty cycle's never does (each wake starts
  clean): in 80 KB a command after many parked samples can find no 640 contiguous bytes.

A node that outgrows its budget fails here: a MemoryError, or batches shrunk after one.
The figures behind the budgets come from bench/firmware_heap.py."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from hil.sim import KINDS, SLEEP_EXIT, node_config, write_json_atomic
from hil.sim_build import NODE_MICROPYPATH, install, node_argv, run_once, sleep_as_asked
from protocols import codec
from tests.support.edge_standin import ReceiptEdge
from tests.support.fleet import decoded, node_log, readings

BUDGET = "64k"
ALWAYS_ON_BUDGET = "96k"
PARKING_BUDGET = {"parking": "80k", "leak": "80k", "air": "88k", "manhole": "88k"}
QUEUED = 12  # several batches (node/app.py BATCH_ITEMS)
INTERVAL_S = 0.2


def cycle(bundle, flash) -> str:
    """One wake: boot, (run commands,) sample, (connect, publish,) deep sleep, and the
    sleep it asked for (as the sim's supervisor does). Returns the console.

    A node whose batch did not fit halves its batches and goes on (node/link.py), which
    is how it is meant to meet a fragmented heap; one that runs out of heap otherwise
    fails here."""
    proc = run_once(bundle, flash, BUDGET)
    out = proc.stdout + proc.stderr
    assert proc.returncode == SLEEP_EXIT, out
    assert "MemoryError" not in out and "batches of 1 " not in out, out
    sleep_as_asked(flash)
    return out


def flash_for(tmp_path, broker, node_id: str, kind: str, schedule: str, interval_s: float):
    cfg = node_config(
        node_id, kind, "xuhui", "caohejing", broker.host, broker.port, interval_s, schedule=schedule, seed=1
    )
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    write_json_atomic(tmp_path / "control.json", {"stimuli": {}, "net": "up"})
    return tmp_path


@pytest.mark.parametrize("kind", KINDS)
def test_duty_cycled_node_replays_its_queue_within_the_budget(kind, tmp_path, bundle, mosquitto, edge):
    node_id = f"heap-{kind[0]}"
    flash = flash_for(tmp_path, mosquitto, node_id, kind, "duty-cycled", INTERVAL_S)
    log = node_log(mosquitto, node_id)
    try:
        write_json_atomic(flash / "control.json", {"stimuli": {}, "net": "down"})
        for _ in range(QUEUED):
            cycle(bundle, flash)
        write_json_atomic(flash / "control.json", {"stimuli": {}, "net": "up"})
        out = cycle(bundle, flash)
        assert f"published tm={QUEUED + 1} " in out, out
        deadline = time.monotonic() + 10  # a hang guard for the broker log
        while len(readings(log)) < QUEUED + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The receipts phase in the same budget: the next wake reads the edge's retained
        # receipt for the whole replay and takes every record it covers off the queue.
        edge.wait_confirmed(node_id, [(1, seq) for seq in range(QUEUED + 1)])
        out += cycle(bundle, flash)
    finally:
        log.close()
    assert readings(log)[: QUEUED + 1] == [(1, seq) for seq in range(QUEUED + 1)]
    # Over the two wakes, every record of the replay left the queue on a receipt.
    confirmed = [int(ln.split(" confirmed ")[1].split()[0]) for ln in out.splitlines() if " confirmed " in ln]
    assert sum(confirmed) >= QUEUED + 1, out


@pytest.mark.parametrize("kind", KINDS)
def test_duty_cycled_wake_that_runs_commands_fits_the_budget(kind, tmp_path, bundle, mosquitto):
    node_id = f"heap-cmd-{kind[0]}"
    flash = flash_for(tmp_path, mosquitto, node_id, kind, "duty-cycled", INTERVAL_S)
    log = node_log(mosquitto, node_id)
    out = ""
    try:
        cycle(bundle, flash)  # the first wake makes the persistent session
        # Sent while the node sleeps: the broker keeps them for its next wake.
        topic = f"city/v1/xuhui/caohejing/{node_id}/cmd"
        log.publish(topic, codec.encode_command("h-1", "set", {"interval_s": 30}))
        log.publish(topic, codec.encode_command("h-2", "sample"))
        log.publish(topic, codec.encode_command("h-3", "get"))
        # The wake that receives them, then the one that runs them (a wake of their own).
        for _ in range(3):
            out += cycle(bundle, flash)
        log.wait_for(lambda ln: len(ln.on("/cmd/ack")) >= 3, what="three acks")
    finally:
        log.close()
    assert "cmd h-1 set ok=True" in out and "cmd h-3 get ok=True" in out, out
    answers = {a["id"]: a for a in decoded(log, "cmd/ack")}
    assert answers["h-1"]["result"] == {"interval_s": 30}
    assert answers["h-2"]["ok"] is True
    assert len(readings(log)) >= 2  # the first wake's, and the one `sample` asked for
    assert answers["h-3"]["result"]["interval_s"] == 30


def run_always_on(bundle, flash, broker, node_id: str, heap: str, command: bool):
    """Run an always-on node until it has sent eight readings (and answered a ping),
    with an edge confirming them (receipts). Returns (console, statuses seen before the
    node was killed, readings)."""
    install(bundle, flash)
    log = node_log(broker, node_id)
    edge = ReceiptEdge(broker.host, broker.port)
    proc = subprocess.Popen(
        node_argv(heap),
        cwd=flash,
        env=dict(os.environ, MICROPYPATH=NODE_MICROPYPATH),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # Enough intervals that sampling, parking and publishing have each come round.
        log.wait_for(lambda ln: len(readings(ln)) >= 8 or proc.poll() is not None, what="eight readings")
        if command:
            log.publish(f"city/v1/xuhui/caohejing/{node_id}/cmd", codec.encode_command("h-9", "ping"))
            log.wait_for(lambda ln: ln.on("/cmd/ack") or proc.poll() is not None, what="an ack")
        statuses = [s["state"] for s in decoded(log, "status")]  # before the kill's will
    finally:
        proc.kill()
        out = proc.communicate()[0].decode()
        log.close()
        edge.close()
    assert "MemoryError" not in out and "batches of 1 " not in out, out
    if command:
        assert [a["ok"] for a in decoded(log, "cmd/ack")] == [True], out
    return out, statuses, readings(log)


@pytest.mark.parametrize("kind", KINDS)
def test_always_on_node_runs_within_its_budget(kind, tmp_path, bundle, mosquitto):
    node_id = f"heap-on-{kind[0]}"
    flash = flash_for(tmp_path, mosquitto, node_id, kind, "always-on", 0.3)
    out, statuses, got = run_always_on(bundle, flash, mosquitto, node_id, ALWAYS_ON_BUDGET, command=True)
    assert len(got) >= 8, out
    assert statuses == ["online"], out


@pytest.mark.parametrize("kind", KINDS)
def test_always_on_node_parks_its_link_to_sample_in_a_small_heap(kind, tmp_path, bundle, mosquitto):
    node_id = f"heap-park-{kind[0]}"
    flash = flash_for(tmp_path, mosquitto, node_id, kind, "always-on", 0.3)
    out, statuses, got = run_always_on(bundle, flash, mosquitto, node_id, PARKING_BUDGET[kind], command=False)
    assert "link parked while sampling" in out, out
    assert got == [(1, seq) for seq in range(len(got))], out  # none lost, none twice
    # One birth for the boot: parking ends each connection with a DISCONNECT.
    assert statuses == ["online"], out
