"""`[limits]` in the edge config: checked like every other section, one line per bad key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.cli import URBANSENSE

BASE = """[site]
district = "xuhui"
zone = "caohejing"
[mqtt]
client_id = "edge-x"
[[sink]]
name = "city"
url = "http://127.0.0.1:8086"
database = "city"
"""


def check(tmp_path: Path, limits: str, *flags: str) -> subprocess.CompletedProcess:
    path = tmp_path / "edge.toml"
    path.write_text(BASE + "[limits]\n" + limits)
    return subprocess.run(
        [URBANSENSE, "edge", "check-config", str(path), *flags], capture_output=True, text=True, timeout=60
    )


def test_auto_and_numbers_are_accepted_and_shown(tmp_path):
    done = check(tmp_path, 'node_rate = "auto"\nevent_rate = 0.5\n', "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        json.loads(done.stdout)["limits"]
        == "messages 5x each node's interval burst 30; events 0.5/s burst 20"
    )
    done = check(tmp_path, "node_rate = 2\nnode_burst = 5\n", "--json")
    assert json.loads(done.stdout)["limits"] == "messages 2/s burst 5; events none"


def test_bad_limits_are_named_one_line_each(tmp_path):
    done = check(tmp_path, 'node_rate = "fast"\nnode_burst = 0\nnode_rat = 1\n')
    assert done.returncode == 1
    lines = done.stdout.splitlines()[1:]
    assert sorted(line.strip().split(":")[0] for line in lines) == [
        "limits.node_burst",
        "limits.node_rat",
        "limits.node_rate",
    ], done.stdout
    assert "Traceback" not in done.stdout + done.stderr
