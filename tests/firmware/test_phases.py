"""The node's phases (firmware/node/__init__.py, PHASES) under MicroPython: after every
drop, no module of a dropped phase is left in sys.modules, for every phase, and a
duty-cycled node goes to sleep with nothing of any phase loaded.

The node boots through main.py with mp/phases_probe.py watching node.drop; the budgets
are test_heap.py's, the heap here leaves room for the probe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hil import micropython
from hil.sim import KINDS, REBOOT_EXIT, SLEEP_EXIT, node_config, write_json_atomic
from hil.sim_build import NODE_MICROPYPATH, install
from protocols import codec
from tests.support.fleet import decoded, node_log

PROBE = Path(__file__).parent / "mp" / "phases_probe.py"
HEAP = "104k"
# What a duty-cycled node holds between its phases: the node and its queues, the HAL,
# the schedule (and the probe, being imported).
RESIDENT = ["files", "hal", "hal.sim", "node", "node.app", "node.duty_cycle", "node.queue", "phases_probe"]


def flash_for(
    tmp_path: Path, bundle: Path, broker, node_id: str, kind: str, schedule: str, commands: list[bytes] = ()
) -> Path:
    """A virtual node's flash with the bundle and the probe, and commands already received
    (in the command queue, as the link leaves them)."""
    cfg = node_config(
        node_id, kind, "xuhui", "caohejing", broker.host, broker.port, 0.2, schedule=schedule, seed=1
    )
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    write_json_atomic(tmp_path / "control.json", {"stimuli": {}, "net": "up"})
    if commands:
        (tmp_path / "queue" / "cmd").mkdir(parents=True)
        (tmp_path / "queue" / "cmd" / "0").write_bytes(b"".join(c + b"\n" for c in commands))
    install(bundle, tmp_path)
    shutil.copy(PROBE, tmp_path / PROBE.name)
    return tmp_path


def probe_argv() -> list[str]:
    return [micropython.interpreter(), "-X", f"heapsize={HEAP}", "-c", "import phases_probe"]


def report(out: str) -> tuple[dict[str, list[str]], list[dict], dict | None]:
    """(the phase table, every drop in order, the stop) from the probe's lines."""
    phases, drops, stop = {}, [], None
    for line in out.splitlines():
        tag, _, body = line.partition(" ")
        if tag == "@phases":
            phases = json.loads(body)
        elif tag == "@drop":
            drops.append(json.loads(body))
        elif tag == "@stop":
            stop = json.loads(body)
    assert phases, out
    return phases, drops, stop


def of(phases: dict[str, list[str]], names: list[str], modules: list[str]) -> list[str]:
    """The modules that belong to the named phases."""
    prefixes = tuple(p for name in names for p in phases[name])
    return [m for m in modules if m.startswith(prefixes)]


def check_drops(phases: dict[str, list[str]], drops: list[dict], out: str) -> set[str]:
    """Every drop left nothing of its phases loaded. Returns the phases that had a module
    loaded when they were dropped (so the check did check something)."""
    exercised = set()
    for drop in drops:
        assert of(phases, drop["phases"], drop["after"]) == [], (drop, out)
        exercised.update(p for p in drop["phases"] if of(phases, [p], drop["before"]))
    return exercised


@pytest.mark.parametrize("kind", KINDS)
def test_duty_cycled_node_drops_every_phase(kind, tmp_path, bundle, mosquitto):
    # A command wake (set, sample: the validator and the decoder), then the wake after it
    # (sampling, then publishing the answers and the reading asked for).
    flash = flash_for(
        tmp_path,
        bundle,
        mosquitto,
        f"ph-{kind}",
        kind,
        "duty-cycled",
        [codec.encode_command("c-1", "set", {"interval_s": 30}), codec.encode_command("c-2", "sample")],
    )
    env = dict(os.environ, MICROPYPATH=NODE_MICROPYPATH)
    exercised = set()
    for wake in ("commands", "sample and publish"):
        proc = subprocess.run(probe_argv(), cwd=flash, env=env, capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        phases, drops, stop = report(proc.stdout)
        assert stop is not None and stop["code"] == SLEEP_EXIT, (wake, out)
        exercised |= check_drops(phases, drops, out)
        # Asleep with nothing of any phase loaded, nor any module outside the table.
        assert stop["modules"] == RESIDENT, (wake, out)
    assert "published tm=1 " in out, out
    assert exercised == set(phases), out


def test_always_on_node_drops_publishing_and_keeps_its_event_loop(tmp_path, bundle, mosquitto):
    node_id = "ph-always-on"
    flash = flash_for(tmp_path, bundle, mosquitto, node_id, "parking", "always-on")
    log = node_log(mosquitto, node_id)
    proc = subprocess.Popen(
        probe_argv(),
        cwd=flash,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, MICROPYPATH=NODE_MICROPYPATH),
    )
    try:
        log.wait_for(lambda ln: ln.on("/status") or proc.poll() is not None, what="the birth")
        # A command parks the link (publishing dropped), runs (commands dropped), and the
        # reboot it asks for ends the process once its answer is sent.
        log.publish(f"city/v1/xuhui/caohejing/{node_id}/cmd", codec.encode_command("c-1", "reboot"))
        log.wait_for(lambda ln: ln.on("/cmd/ack") or proc.poll() is not None, what="the ack")
        out = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        log.close()
    assert [a["id"] for a in decoded(log, "cmd/ack")] == ["c-1"], out
    phases, drops, stop = report(out)
    assert stop is not None and stop["code"] == REBOOT_EXIT, out
    assert check_drops(phases, drops, out) >= {"sampling", "publishing", "commands", "protocols"}, out
    # The link was parked with its code loaded, and the loop the schedule runs in stayed.
    parked = [d for d in drops if d["phases"] == ["publishing"] and "node.link" in d["before"]]
    assert parked and all("asyncio" in d["after"] for d in parked), out
