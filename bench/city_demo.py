"""City in a box, end to end: run `urbansense demo` as a user does (default 32 nodes, 4 edges,
60 s) a few times and print what it measured: the staged alarms' latency from the stimulus
set on the node to the alarm on `alarms/v1/...` and to the point visible in InfluxDB, how
long the city took to come up, and how many readings landed.

    .venv/bin/python bench/city_demo.py [--runs 3] [--duration 60] [--nodes-per-zone 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def run_once(state: Path, duration: float, nodes: int, interval: float) -> tuple[dict, float]:
    exe = Path(sys.executable).parent / "urbansense"
    began = time.monotonic()
    proc = subprocess.run(
        [
            str(exe),
            "demo",
            "--json",
            "--state-dir",
            str(state),
            "--duration",
            str(duration),
            "--nodes-per-zone",
            str(nodes),
            "--interval",
            str(interval),
        ],
        capture_output=True,
        text=True,
        timeout=duration + 600,
    )
    wall = time.monotonic() - began
    if not proc.stdout.strip():
        raise SystemExit(f"demo failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--nodes-per-zone", type=int, default=8)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    console = Console()
    latencies: dict[tuple[str, str], list[float]] = {}
    missing: list[str] = []
    table = Table(
        title=f"urbansense demo: {args.runs} runs, {4 * args.nodes_per_zone} nodes, "
        f"{args.duration:g} s, interval {args.interval:g} s"
    )
    for col in ("run", "wall s", "messages", "raw points", "city events", "problems"):
        table.add_column(col)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            report, wall = run_once(Path(tmp) / "demo", args.duration, args.nodes_per_zone, args.interval)
            points = sum(ln["points"] for ln in report["landed"] if ln["database"] != "city")
            events = next(
                ln["points"]
                for ln in report["landed"]
                if ln["database"] == "city" and ln["measurement"] == "events"
            )
            table.add_row(
                str(i + 1),
                f"{wall:.0f}",
                str(report["messages"]),
                str(points),
                str(events),
                "; ".join(report["problems"]) or "none",
            )
            for s in report["staged_alarms"]:
                for path in ("alarms_topic_ms", "influxdb_ms"):
                    if s[path] is None:
                        missing.append(f"run {i + 1}: {s['alarm']} {path}")
                    else:
                        latencies.setdefault((s["alarm"], path), []).append(s[path])
    console.print(table)
    lat = Table(title="staged alarm latency, stimulus -> seen (ms)")
    for col in ("alarm", "where", "n", "median", "max"):
        lat.add_column(col)
    for (alarm, path), values in sorted(latencies.items()):
        lat.add_row(
            alarm,
            "alarms topic" if path == "alarms_topic_ms" else "InfluxDB",
            str(len(values)),
            f"{statistics.median(values):.0f}",
            f"{max(values):.0f}",
        )
    console.print(lat)
    for m in missing:
        console.print(f"not seen: {m}", highlight=False)


if __name__ == "__main__":
    main()
