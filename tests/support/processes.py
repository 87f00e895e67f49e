"""Which processes are still alive in a folder (what a run must not leave behind), and a
process's children (an edge's receiving process)."""

from __future__ import annotations

import os
from pathlib import Path


def processes_using(folder: Path) -> list[str]:
    """Processes whose command line or working folder lies in `folder`."""
    found = []
    mark = str(folder)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if mark in cmdline or cwd.startswith(mark):
            found.append(f"{pid}: {cmdline[:120]}")
    return found


def children(pid: int) -> list[int]:
    """The living children of a process (all its threads'), from /proc."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass  # a thread that ended meanwhile
    return out
