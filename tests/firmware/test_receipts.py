"""Receipts (protocols/SPEC.md 7.1) on the node, under MicroPython against a real
Mosquitto, the test playing the edge: it publishes receipts (retained, QoS 1) of its own
or runs tests/support/edge_standin.py, which confirms what it receives.

- A record stays in the flash queue after the broker's PUBACK, until a receipt covers it;
  a receipt takes off exactly the records it covers, from the head.
- A receipt covering a later record makes the node send the earlier one again, at once.
- With no receipt at all the node sends its queue again after 2, 4, 8... intervals, and
  never more often.
- A node without NTP takes the edge's clock from a fresh receipt, never from a retained
  one made before it published.
- A power cut between publishing and the receipt keeps the records.
- The birth reports first_seq and dropped.

Duty-cycled nodes here are woken one wake at a time (pin wakes, with an interval long
enough that no resend delay runs out between them), so each wake's work can be checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from hil.sim import DEFAULT_HEAP, SLEEP_EXIT, node_config, write_json_atomic
from hil.sim_build import NODE_MICROPYPATH, install, node_argv
from protocols import codec
from tests.support.edge_standin import ReceiptEdge
from tests.support.fleet import decoded, make_node, node_log, readings, started
from tests.support.node_site import queued
from tests.support.waiting import wait_for

ZONE = "city/v1/xuhui/caohejing"
EMPTY_BAY = {"mag_delta_ut": 0.0, "mag_drift_ut": 0.0}


def flash_for(tmp_path: Path, broker, node_id: str, **extra) -> Path:
    """A duty-cycled parking node (its bay kept empty: no events), one reading per wake."""
    cfg = node_config(
        node_id, "parking", "xuhui", "caohejing", broker.host, broker.port, 60, schedule="duty-cycled", seed=1
    )
    cfg.update(extra)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    write_json_atomic(tmp_path / "control.json", {"stimuli": EMPTY_BAY, "net": "up"})
    return tmp_path


def wake(bundle: Path, flash: Path, pin: bool = True) -> str:
    """One wake of a duty-cycled node, as the sim's supervisor starts it; its console.
    A pin wake samples whatever the interval; a timer wake before the interval does not."""
    install(bundle, flash)
    env = dict(os.environ, MICROPYPATH=NODE_MICROPYPATH)
    env.pop("URBANSENSE_WAKE", None)
    if pin and (flash / "rtc.json").exists():
        env["URBANSENSE_WAKE"] = "pin"
    proc = subprocess.run(
        node_argv(DEFAULT_HEAP), cwd=flash, env=env, capture_output=True, text=True, timeout=60
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == SLEEP_EXIT, out
    return out


def receipt(log, node_id: str, got: list[list[int]], ts: int | None = None) -> None:
    """A receipt of the test's own, retained as the edge's are."""
    payload = codec.encode_receipt(node_id, int(time.time() * 1000) if ts is None else ts, got)
    log.publish(f"{ZONE}/{node_id}/receipt", payload, retain=True)


def times(log, identity: tuple[int, int]) -> int:
    """How many times a reading reached the broker."""
    return readings(log).count(identity)


def test_records_stay_queued_after_the_puback_until_a_receipt_covers_them(tmp_path, bundle, mosquitto):
    node_id = "rc-keep"
    flash = flash_for(tmp_path, mosquitto, node_id)
    log = node_log(mosquitto, node_id)
    try:
        for _ in range(3):
            assert "published tm=1 " in wake(bundle, flash)
        log.wait_for(lambda ln: {(1, 0), (1, 1), (1, 2)} <= set(readings(ln)), what="three readings")
        # The broker acknowledged all three; the node keeps them.
        assert queued(flash) == [(1, 0), (1, 1), (1, 2)]
        receipt(log, node_id, [[1, 0, 1]])
        out = wake(bundle, flash)  # reads the retained receipt, publishes (1, 3)
        assert "confirmed 2 queued=2" in out, out
        assert queued(flash) == [(1, 2), (1, 3)]
        receipt(log, node_id, [[1, 0, 3]])
        out = wake(bundle, flash)
        assert "confirmed 2 queued=1" in out, out
        assert queued(flash) == [(1, 4)]
    finally:
        log.close()
    # Nothing was sent twice: no receipt showed a loss, and no resend delay ran out.
    got = readings(log)
    assert sorted(got) == [(1, s) for s in range(5)]


def test_a_receipt_with_a_gap_trims_to_the_gap_and_the_missing_record_goes_again(tmp_path, bundle, mosquitto):
    node_id = "rc-gap"
    flash = flash_for(tmp_path, mosquitto, node_id)
    log = node_log(mosquitto, node_id)
    try:
        for _ in range(3):
            wake(bundle, flash)
        log.wait_for(lambda ln: len(readings(ln)) >= 3, what="three readings")
        # (1, 1) did not reach the edge, which committed (1, 0) and (1, 2).
        receipt(log, node_id, [[1, 0, 0], [1, 2, 2]])
        out = wake(bundle, flash)
        assert "confirmed 1 " in out and "resend: 1 1 lost" in out, out
        # Only the head up to the gap goes; (1, 2) stays behind the missing record.
        assert queued(flash) == [(1, 1), (1, 2), (1, 3)]
        assert times(log, (1, 1)) == 1
        out = wake(bundle, flash)  # sends from the head again
        log.wait_for(lambda ln: times(ln, (1, 1)) == 2, what="(1, 1) sent again")
        assert "published tm=4 " in out, out  # (1, 1), (1, 2), (1, 3) and the new (1, 4)
        # The same retained receipt, read again, shows no new loss: no second resend.
        out = wake(bundle, flash)
        assert "lost" not in out and "published tm=1 " in out, out
    finally:
        log.close()
    assert times(log, (1, 1)) == 2


def test_a_receipt_for_a_later_record_makes_an_always_on_node_resend_at_once(tmp_path, bundle, mosquitto):
    node_id = "rc-lost"
    lost = []

    def lose_once(node: str, boot: int, seq: int) -> bool:
        # The first arrival of (1, 3) never reaches the edge, as if the broker lost it.
        if node == node_id and (boot, seq) == (1, 3) and not lost:
            lost.append((boot, seq))
            return True
        return False

    edge = ReceiptEdge(mosquitto.host, mosquitto.port, lose=lose_once)
    log = node_log(mosquitto, node_id)
    # An interval of a second: the resend delay (2 intervals) cannot run out before the
    # receipt of (1, 4) arrives, even on a loaded machine.
    node = make_node(tmp_path, bundle, mosquitto, "leak", node_id, "always-on", 1.0)
    node.set_stimulus("wet", False)
    try:
        with started(node, log):
            edge.wait_confirmed(node_id, [(1, s) for s in range(6)])
            console = list(node.console)
            tm = readings(log)
    finally:
        edge.close()
    assert lost == [(1, 3)]
    assert any("resend: 1 3 lost" in line for line in console), console
    # Sent again because a receipt showed it lost, not because a delay ran out; and only
    # the queue from (1, 3) on went twice, once.
    assert not any("no receipt" in line for line in console), console
    assert tm.count((1, 3)) == 2
    assert all(tm.count((1, s)) == 1 for s in range(3))
    assert max(tm.count(i) for i in set(tm)) <= 2


def test_without_receipts_the_node_resends_at_a_growing_delay_and_no_oftener(tmp_path, bundle, mosquitto):
    node_id = "rc-away"
    log = node_log(mosquitto, node_id)
    node = make_node(tmp_path, bundle, mosquitto, "leak", node_id, "always-on", 0.2)
    node.set_stimulus("wet", False)

    def resends() -> list[str]:
        return [line for line in node.console if "resend: no receipt" in line]

    with started(node, log):
        # The fourth resend comes after 2 + 4 + 8 + 16 intervals (6 s); 60 s: a hang guard.
        wait_for(lambda: len(resends()) >= 4, 60, 0.1, "four resends")
        node.stop()
        lines = resends()
        log.wait_for(lambda ln: ln.on("/status"), what="the node's messages")
        first = readings(log).count((1, 0))
    waited = [int(re.search(r"no receipt for (\d+) ms", ln).group(1)) for ln in lines]
    assert len(waited) >= 4, lines
    # The k-th resend waited at least 2^k intervals of 200 ms (the node is never early;
    # a loaded machine only makes it late).
    for k, ms in enumerate(waited, start=1):
        assert ms >= 200 * 2**k, (k, waited)
    # Each resend sent the queue once from its head: (1, 0) went once, then once a resend.
    assert 2 <= first <= 1 + len(waited), (first, waited)


def test_a_node_without_ntp_takes_the_clock_from_a_fresh_receipt_never_a_stale_one(
    tmp_path, bundle, mosquitto
):
    node_id = "rc-clock"
    flash = flash_for(tmp_path, mosquitto, node_id, ntp=False)
    log = node_log(mosquitto, node_id)
    edge = None
    try:
        out = wake(bundle, flash)
        assert "clock from the edge" not in out
        # A retained receipt made an hour ago by a clock an hour behind, covering what the
        # node will send next: it arrives before the node publishes, so it is not fresh.
        receipt(log, node_id, [[1, 0, 9]], ts=int(time.time() * 1000) - 3_600_000)
        out = wake(bundle, flash)
        assert "confirmed 2 " in out and "clock from the edge" not in out, out
        assert "error" not in out, out
        edge = ReceiptEdge(mosquitto.host, mosquitto.port)
        out = wake(bundle, flash)  # the edge confirms (1, 2) while the node waits for it
        assert "clock from the edge, within" in out, out
        before = int(time.time() * 1000)
        out = wake(bundle, flash)
        after = int(time.time() * 1000)
        log.wait_for(lambda ln: (1, 3) in readings(ln), what="the reading of the clocked wake")
        edge.wait_confirmed(node_id, [(1, 3)])
    finally:
        log.close()
        if edge is not None:
            edge.close()
    stamped = {(r["boot"], r["seq"]): r for m in decoded(log, "telemetry") for r in m["readings"]}
    # Before the clock: age_ms (the edge's estimate); after it: the node's own ts, within
    # the wake that took it (the sim's local clock is the host's: a wrong offset, an hour
    # say, would show).
    assert [stamped[(1, s)]["time_source"] for s in range(3)] == ["edge", "edge", "edge"]
    assert stamped[(1, 3)]["time_source"] == "node"
    assert before - 1000 <= stamped[(1, 3)]["ts"] <= after + 1000, (before, stamped[(1, 3)], after)


def test_power_cut_between_publishing_and_the_receipt_keeps_the_records(tmp_path, bundle, mosquitto_factory):
    broker = mosquitto_factory()
    node_id = "rc-cut"
    log = node_log(broker, node_id)
    node = make_node(tmp_path, bundle, broker, "leak", node_id, "duty-cycled", 0.3)
    node.set_stimulus("wet", False)
    edge = None
    try:
        with started(node, log):
            node.wait_for_console("published")
            node.cut_power_at("published")  # acknowledged by the broker, no receipt yet
            node.wait_for_console("power cut at published")
            node.wait_for_console("boot 2")
            node.cut_network(True)  # hold boot 2's sending back while the flash is read
            node.wait_for_console("error network")
            boot1 = [i for i in node.taken() if i[0] == 1]
            kept = queued(node.flash_dir)
            # Every reading of boot 1 is still queued: acknowledged, never confirmed.
            assert [i for i in kept if i[0] == 1] == boot1
            assert all(i in readings(log) for i in boot1)  # the broker had them all
            edge = ReceiptEdge(broker.host, broker.port)
            node.cut_network(False)
            taken = node.taken()  # one snapshot: the node goes on taking readings
            edge.wait_confirmed(node_id, taken)
    finally:
        log.close()
        if edge is not None:
            edge.close()
    assert {1, 2} <= {b for b, _ in taken}
    assert edge.confirmed(node_id) >= set(taken)
    # Nothing was dropped at the queue bound (the node writes its counter when it drops).
    assert not (node.flash_dir / "state" / "counters.json").exists()


def test_the_birth_reports_first_seq_and_dropped(tmp_path, bundle, mosquitto):
    node_id = "rc-birth"
    flash = flash_for(tmp_path, mosquitto, node_id, queue_max=10)
    log = node_log(mosquitto, node_id)
    try:
        wake(bundle, flash)  # online: a birth, and (1, 0) sent
        write_json_atomic(flash / "control.json", {"stimuli": EMPTY_BAY, "net": "down"})
        for _ in range(14):  # offline: the bound takes the oldest, (1, 0) and 4 never sent
            wake(bundle, flash)
        write_json_atomic(flash / "control.json", {"stimuli": EMPTY_BAY, "net": "up"})
        out = wake(bundle, flash, pin=False)  # a timer wake before the interval: no sample
        assert "published tm=10 " in out, out
        log.wait_for(lambda ln: len(ln.on("/status")) >= 2, what="two births")
    finally:
        log.close()
    births = [s for s in decoded(log, "status") if s["state"] == "online"]
    counters = json.loads((flash / "state" / "counters.json").read_text())
    # 15 readings, 10 kept; of the 5 the bound took, (1, 0) had been sent (the broker has
    # it): dropped counts the 4 that never left the node.
    assert queued(flash) == [(1, s) for s in range(5, 15)]
    assert counters["dropped"] == 4
    assert (1, 0) in readings(log)
    # The first birth of the boot: nothing confirmed, nothing dropped. The last: what the
    # bound took, and the oldest reading of the boot still kept.
    assert [(b["first_seq"], b["dropped"]) for b in births] == [(0, 0), (5, 4)]
