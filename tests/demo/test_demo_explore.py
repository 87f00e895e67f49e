"""After the demo: the commands it prints work as printed in a new shell (another folder,
`urbansense` not on PATH), and `demo --serve` keeps InfluxDB up on the kept state so that
the operations commands answer from another shell, then stops it on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from tests.demo.short_demo import run_short_demo
from tests.support.cli import URBANSENSE
from tests.support.processes import processes_using

# A new shell: no venv on PATH, nothing of this process's environment but the basics.
NEW_SHELL_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}


def in_a_new_shell(line: str, cwd, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=NEW_SHELL_ENV, capture_output=True, text=True, timeout=timeout
    )


def printed_commands(text: str, marker: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.startswith("  ") and marker in ln]


@pytest.fixture(scope="module")
def finished_demo(tmp_path_factory):
    state = tmp_path_factory.mktemp("explore") / "demo"
    proc = run_short_demo(state)
    assert "State kept in" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    return state, proc.stdout


def test_printed_queries_work_in_a_new_shell(finished_demo, tmp_path):
    state, out = finished_demo
    queries = printed_commands(out, " --query ")
    assert len(queries) == 4, out[-2000:]
    assert all(q.startswith(f"{URBANSENSE} demo --state-dir {state} ") for q in queries), queries
    for line in queries:
        done = in_a_new_shell(line, tmp_path)
        assert done.returncode == 0, (line, done.stderr)
        assert done.stdout.strip() and "no rows" not in done.stderr, (line, done.stdout)
    assert processes_using(state) == []


def test_serve_keeps_the_data_up_for_the_operations_commands(finished_demo, tmp_path):
    state, out = finished_demo
    (serve,) = printed_commands(out, " --serve")
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {serve}"],
        cwd=tmp_path,
        env=NEW_SHELL_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120  # a hang guard
        while not any("URBANSENSE_INFLUX_URL" in ln for ln in said):
            assert proc.poll() is None and time.monotonic() < deadline, ("".join(said), proc.stderr.read())
            time.sleep(0.1)
        commands = printed_commands("".join(said), " query ") + printed_commands("".join(said), " report ")
        assert len(commands) == 4, said
        for line in commands:
            done = in_a_new_shell(line, tmp_path)
            assert done.returncode == 0, (line, done.stderr)
        alarms = in_a_new_shell(commands[0] + " --json", tmp_path)
        assert '"open"' in alarms.stdout and "leak" in alarms.stdout, alarms.stdout
        assert (tmp_path / "report.html").stat().st_size > 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped serving" in proc.stderr.read()
    assert processes_using(state) == []


def test_serve_without_a_demo_is_one_line(tmp_path):
    proc = subprocess.run(
        [URBANSENSE, "demo", "--serve", "--state-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip() == f"urbansense: no demo data in {tmp_path / 'none'}: run `urbansense demo` first"
    )
