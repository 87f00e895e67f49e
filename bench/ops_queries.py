"""How long the operations questions and the report take on a larger city.

Writes a synthetic district (parking and air nodes reporting every 5 minutes for 24 hours,
events and node health) into a private InfluxDB 1.6, then times each `urbansense query`
question and the report, several times each, and prints the figures.

    .venv/bin/python bench/ops_queries.py [--parking 1000] [--air 200] [--zones 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from hil.services import InfluxDBServer  # noqa: E402
from ops import questions  # noqa: E402
from ops.client import InfluxQLClient  # noqa: E402
from ops.report import gather, render  # noqa: E402
from ops.scope import Place, Window  # noqa: E402

STEP_MS = 300_000
DAY_MS = 86_400_000
DB = "district_bench"


def lines(args: argparse.Namespace, end_ms: int):
    """Line protocol of the synthetic district, one node at a time."""
    rng = random.Random(1)
    start = end_ms - DAY_MS
    times = range(start - start % STEP_MS, end_ms, STEP_MS)
    for i in range(args.parking):
        tags = f"district=bench,zone=z{i % args.zones:02d},node=p-{i:05d}"
        occupied = False
        for t in times:
            if rng.random() < 0.08:
                occupied = not occupied
                yield (
                    f"events,{tags},kind=parking,event=occupancy,severity=info state={str(occupied).lower()} {t + 1}"
                )
            yield f"parking,{tags} occupied={str(occupied).lower()},battery_v=3.6 {t}"
    for i in range(args.air):
        tags = f"district=bench,zone=z{i % args.zones:02d},node=a-{i:05d}"
        base = rng.uniform(10, 150)
        for t in times:
            yield f"air,{tags} pm25={base + rng.uniform(-5, 5):.1f},pm10={1.6 * base:.1f} {t}"
    for i in range(args.parking + args.air):
        kind, node = ("parking", f"p-{i:05d}") if i < args.parking else ("air", f"a-{i - args.parking:05d}")
        tags = f"district=bench,zone=z{i % args.zones:02d},node={node},kind={kind}"
        for t in times[::12]:
            online = "false" if i % 97 == 0 and t > end_ms - 3_600_000 else "true"
            yield (
                f"node_health,{tags} online={online},battery_v={3.2 if i % 50 == 0 else 3.6},rssi=-70,"
                f"last_seen={t},seq_gaps={float(max(0, t - start) // 3_600_000 if i % 7 == 0 else 0)} {t}"
            )
        if i % 25 == 0:
            yield f"events,{tags},event=battery-low,severity=warning state=true,value=3.2 {end_ms - 7_200_000}"


def write_all(url: str, args: argparse.Namespace, end_ms: int) -> int:
    batch, total = [], 0
    nodes = args.parking + args.air
    points_estimate = nodes * (DAY_MS // STEP_MS) * 1.1
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("writing the synthetic district", total=points_estimate)
        for line in lines(args, end_ms):
            batch.append(line)
            if len(batch) == 10_000:
                total += _post(url, batch)
                progress.advance(task, len(batch))
                batch = []
        total += _post(url, batch)
        progress.update(task, completed=points_estimate)
    return total


def _post(url: str, batch: list[str]) -> int:
    if batch:
        req = urllib.request.Request(
            f"{url}/write?db={DB}&precision=ms", data="\n".join(batch).encode(), method="POST"
        )
        urllib.request.urlopen(req, timeout=120).close()
    return len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parking", type=int, default=1000, help="parking nodes (default 1000)")
    parser.add_argument("--air", type=int, default=200, help="air nodes (default 200)")
    parser.add_argument("--zones", type=int, default=10, help="zones (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each question (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = InfluxDBServer(Path(tmp))
        server.start()
        try:
            end_ms = int(time.time() * 1000)
            server.create_database(DB)
            t0 = time.perf_counter()
            points = write_all(server.url, args, end_ms)
            write_s = time.perf_counter() - t0
            q = questions.Question(
                InfluxQLClient(server.url, timeout=300), DB, Window(end_ms - DAY_MS, end_ms), Place()
            )
            jobs = {
                "query parking": lambda: questions.parking(q),
                "query air": lambda: questions.air(q),
                "query alarms": lambda: questions.alarms(q),
                "query nodes": lambda: questions.nodes(q),
                "report (gather + render)": lambda: render(gather(q)),
            }
            table = Table(
                title=f"{points:,} points, {args.parking} parking + {args.air} air nodes, 24 h "
                f"(written in {write_s:.1f} s, {points / write_s:,.0f} points/s)"
            )
            for col in ("question", "median s", "min s", "max s"):
                table.add_column(col)
            for name, job in jobs.items():
                runs = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    job()
                    runs.append(time.perf_counter() - t)
                table.add_row(name, f"{statistics.median(runs):.3f}", f"{min(runs):.3f}", f"{max(runs):.3f}")
            Console().print(table)
            # ru_maxrss is in KiB on Linux: the peak of this process, queries and report included.
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            Console().print(f"peak memory of the querying process: {peak_mib:.0f} MiB")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
