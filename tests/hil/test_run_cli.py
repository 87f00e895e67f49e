"""`urbansense hil run` refuses bad input before it starts anything: one line, non-zero."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cli import URBANSENSE, urbansense
from tests.support.processes import processes_using

SCENARIO = str(Path(__file__).resolve().parents[2] / "hil" / "scenarios" / "leak-sleeping-node.yaml")


def hil_run(*args: str) -> subprocess.CompletedProcess[str]:
    return urbansense("hil", "run", *args, timeout=60)


def test_a_bad_scenario_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(SCENARIO).read_text().replace("within_ms: 5000", "within: 5000"))
    proc = hil_run(SCENARIO, str(bad))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"urbansense: {bad}: expect.0.within: unknown key")
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_a_missing_serial_port_is_one_line():
    proc = hil_run(SCENARIO, "--board", "/dev/ttyNOPE0")
    assert proc.returncode == 1
    assert proc.stderr == "urbansense: --board /dev/ttyNOPE0: no such serial port\n"


def test_an_unknown_board_kind_is_one_line():
    proc = hil_run(SCENARIO, "--board", "esp8266")
    assert proc.returncode == 1
    assert "expected virtual, sim or a serial port path" in proc.stderr and "Traceback" not in proc.stderr


def test_more_boards_than_the_scenario_has():
    proc = hil_run(SCENARIO, "--board", "virtual", "--board", "virtual")
    assert proc.returncode == 2
    assert "2 --board given for 1 board(s)" in proc.stderr


def test_jobs_out_of_range():
    proc = hil_run(SCENARIO, "--jobs", "0")
    assert proc.returncode == 2 and "--jobs 0: must be 1..16" in proc.stderr


def test_sigterm_stops_every_server_and_board(tmp_path):
    """A CI job's timeout sends SIGTERM: the run stops and leaves nothing running."""
    import signal
    import time

    work = tmp_path / "work"
    proc = subprocess.Popen(
        [URBANSENSE, "hil", "run", SCENARIO, "--workdir", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    for line in proc.stdout:
        if "t=0 s" in line or "t=4 s" in line or time.monotonic() > deadline:
            break
    assert processes_using(work), "nothing was running to stop"
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    assert "urbansense: interrupted" in rest and "Traceback" not in rest
    assert processes_using(work) == []
