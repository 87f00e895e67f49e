"""The main job as a user runs it: `urbansense demo` with its output piped (so it prints
plain progress lines), a short duration and few nodes. The city must run on real servers,
the real edge and the real firmware, stage its three alarms with measured latencies, leave
data that the printed query returns, stop everything it started, and run again on the same
folder (here interrupted with Ctrl-C, which must also stop everything)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from tests.demo.short_demo import run_short_demo
from tests.support.cli import URBANSENSE
from tests.support.processes import processes_using

# Hang guards only (conditions are waited on, never times): far beyond what a loaded
# machine needs, and below the test's own timeout so that a failure shows the terminal.
LIVE_VIEW_S = 180
STOPPED_S = 300


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    state = tmp_path_factory.mktemp("city") / "demo"
    proc = run_short_demo(state, "--json")
    return state, proc


def test_demo_runs_the_city_and_reports_what_landed(first_run):
    state, proc = first_run
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert report["nodes"] == 16 and report["nodes_online"] == 16, proc.stderr[-3000:]
    # plain progress lines, not a live view, when the output is not a terminal
    assert f"state folder: {state}" in proc.stderr
    assert "nodes online 16/16" in proc.stderr
    landed = {(ln["database"], ln["measurement"]): ln for ln in report["landed"]}
    for district in ("xuhui", "minhang"):
        for kind in ("parking", "air", "leak", "manhole"):
            row = landed[(f"district_{district}", kind)]
            assert row["points"] > 0 and row["nodes"] >= 1, row
    assert landed[("city", "events")]["points"] >= 2
    assert landed[("city", "node_health")]["nodes"] == 16


def test_leak_and_gas_alarms_are_measured_end_to_end(first_run):
    _, proc = first_run
    staged = {s["event"]: s for s in json.loads(proc.stdout)["staged_alarms"]}
    for event in ("leak", "ch4"):
        s = staged[event]
        assert s["alarms_topic_ms"] is not None and s["alarms_topic_ms"] > 0, s
        assert s["influxdb_ms"] is not None and s["influxdb_ms"] > 0, s


def test_every_staged_alarm_is_measured_and_the_demo_succeeds(first_run):
    """The opened manhole cover too (the `cover_open` stimulus on a manhole node), and then
    the demo's exit code is 0 with no problem reported."""
    _, proc = first_run
    report = json.loads(proc.stdout)
    staged = {s["event"]: s for s in report["staged_alarms"]}
    assert set(staged) == {"leak", "cover-open", "ch4"}
    cover = staged["cover-open"]
    assert cover["alarms_topic_ms"] is not None and cover["influxdb_ms"] is not None, (
        cover,
        report["problems"],
    )
    assert report["problems"] == []
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_every_staged_alarm_is_told_to_its_districts_institution(first_run):
    """Through the demo's own Alertmanager (state under <state>/alertmanager) to the
    district's operations centre, whose webhook the demo runs."""
    state, proc = first_run
    for s in json.loads(proc.stdout)["staged_alarms"]:
        assert s["notified_to"] == f"{s['district']}-ops", s
        assert s["notified_ms"] is not None and s["notified_ms"] > s["alarms_topic_ms"], s
    assert (state / "alertmanager" / "alertmanager.yml").is_file()
    assert (state / "alertmanager" / "data").is_dir()


def test_nothing_is_left_running(first_run):
    state, _ = first_run
    assert processes_using(state) == []


def test_the_printed_query_returns_the_data_afterwards(first_run):
    state, proc = first_run
    report = json.loads(proc.stdout)
    landed = {(ln["database"], ln["measurement"]): ln["points"] for ln in report["landed"]}
    query = subprocess.run(
        [
            URBANSENSE,
            "demo",
            "--state-dir",
            str(state),
            "--database",
            "district_xuhui",
            "--query",
            'SELECT COUNT(*) FROM "air" GROUP BY "zone"',
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert query.returncode == 0, query.stderr
    series = json.loads(query.stdout)
    assert {s["tags"]["zone"] for s in series} == {"caohejing", "xujiahui"}
    counted = sum(max(v for v in s["values"][0][1:] if v is not None) for s in series)
    assert counted == landed[("district_xuhui", "air")]
    bad = subprocess.run(
        [URBANSENSE, "demo", "--state-dir", str(state), "--query", "SELEKT nothing"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
    assert processes_using(state) == []


def _read_until(fd: int, marker: bytes | None, timeout: float, seen: bytearray) -> bool:
    """Read the terminal into `seen` until `marker` shows (None: until the program has
    ended and closed it). False if the deadline passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal's other end closed: the program ended
                return marker is None or marker in seen
            if not chunk:
                return marker is None or marker in seen
            seen.extend(chunk)
            if marker is not None and marker in seen:
                return True
    return False


def last_lines(terminal: str, n: int = 80) -> str:
    """What the terminal showed last, without the live view's control sequences. The live
    view redraws itself several times a second: each line is kept where it last appeared,
    so the lines the demo said come in their order, before the view's last frame."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", terminal)
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    last = {line: i for i, line in enumerate(lines)}
    return "\n".join(sorted(last, key=last.__getitem__)[-n:])


@pytest.mark.timeout(LIVE_VIEW_S + STOPPED_S + 60)
def test_second_run_on_a_terminal_reuses_the_folder_and_ctrl_c_stops_everything(first_run):
    """A second run on the same folder, in a terminal (a pty as its controlling terminal, so
    the live view is drawn), stopped with Ctrl-C typed on that terminal."""
    state, _ = first_run
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [
            URBANSENSE,
            "demo",
            "--duration",
            "120",
            "--nodes-per-zone",
            "2",
            "--interval",
            "2",
            "--state-dir",
            str(state),
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=controlling_terminal,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    os.close(slave)
    seen = bytearray()
    try:
        # The live view's table of staged alarms appears once the city runs.
        assert _read_until(master, b"staged alarms: end-to-end latency", LIVE_VIEW_S, seen), last_lines(
            seen.decode(errors="replace")
        )
        os.write(master, b"\x03")  # Ctrl-C on the terminal: SIGINT to its foreground group
        # Until the demo has stopped everything and closed the terminal; if it has not by the
        # deadline it is killed, and the exit code's assertion shows what it printed last.
        deadline = time.monotonic() + STOPPED_S
        if _read_until(master, None, STOPPED_S, seen):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    out = seen.decode(errors="replace")
    assert proc.returncode == 130, last_lines(out)
    # the live view was drawn (its tables), not the plain lines a pipe gets
    assert "latest alarms (" in out and "edge buffer (lines)" in out and " running: nodes online" not in out
    assert "interrupted: collecting what landed" in out
    assert "raw readings per district and kind" in out
    assert "Traceback" not in out
    assert processes_using(state) == []
