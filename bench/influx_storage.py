"""Disk bytes per point in InfluxDB 1.6 for each kind's raw readings and one-minute rollups,
as the edge writes them (edge/schema.py: the measurement, tags and fields of edge/SCHEMA.md),
once compacted into TSM files: the storage figure of docs/SCALE.md.

A private InfluxDB (hil/services.py) told to snapshot and fully compact a shard after one
cold second; a day of --nodes nodes per kind at each kind's real reporting interval
(protocols/thresholds.py), values that drift as sensors' do, rounded to the sensors'
resolution; written through the v1 /write API in batches of 5,000 lines. Counted: the TSM
files' bytes once the WAL is empty, divided by the points written (the series index grows
with nodes, not with points: a few hundred bytes per series); and the rate the batches
were written at, one writer, on this machine.

    .venv/bin/python bench/influx_storage.py [--nodes 100] [--hours 24]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.models import readings_of  # noqa: E402
from edge.schema import reading_line  # noqa: E402
from hil.services import InfluxDBServer  # noqa: E402
from protocols.catalog import BOOL, COMMON_FIELDS, KIND_FIELDS  # noqa: E402
from protocols.thresholds import DEFAULT_INTERVAL_S  # noqa: E402


class CompactingInfluxDB(InfluxDBServer):
    """Snapshots its cache and compacts a shard fully after one cold second, so the bytes
    on disk are those of a database at rest (the defaults wait 10 minutes and 4 hours)."""

    def prepare(self) -> None:
        super().prepare()
        text = self.config_path.read_text().replace(
            "[data]\n",
            '[data]\n  cache-snapshot-write-cold-duration = "1s"\n  compact-full-write-cold-duration = "1s"\n',
        )
        self.config_path.write_text(text)


def fields_of(kind: str, rng: random.Random, state: dict) -> dict:
    """One reading's fields: every float drifts from its last value by a little."""
    out: dict = {}
    for name, (ftype, _unit, low, high) in {**KIND_FIELDS[kind], **COMMON_FIELDS}.items():
        if ftype == BOOL:
            out[name] = state.get(name, False) if rng.random() > 0.02 else not state.get(name, False)
        elif name == "uptime_s":
            out[name] = float(state.get(name, 0.0) + DEFAULT_INTERVAL_S[kind])
        else:
            span = high - low
            value = state.get(name, low + span * rng.uniform(0.05, 0.3))
            out[name] = round(min(high, max(low, value + rng.gauss(0, span * 0.002))), 1)
        state[name] = out[name]
    return out


def lines_for(kind: str, nodes: int, hours: float, start_ms: int, rng: random.Random) -> list[str]:
    interval_ms = DEFAULT_INTERVAL_S[kind] * 1000
    lines = []
    for n in range(nodes):
        state: dict = {}
        node = f"{kind[0]}{n:05d}"
        for i in range(int(hours * 3_600_000 // interval_ms)):
            ts = start_ms + i * interval_ms + n * 37  # nodes are not in lockstep
            reading = {
                "boot": 1,
                "seq": i,
                "ts": ts,
                "time_source": "node",
                "fields": fields_of(kind, rng, state),
            }
            message = {
                "district": "xuhui",
                "zone": "caohejing",
                "node": node,
                "kind": kind,
                "readings": [reading],
            }
            lines += [reading_line(r) for r in readings_of(message, ts)]
    return lines


def write(influx: InfluxDBServer, db: str, lines: list[str]) -> None:
    for start in range(0, len(lines), 5000):
        body = "\n".join(lines[start : start + 5000]).encode()
        req = urllib.request.Request(f"{influx.url}/write?db={db}&precision=ms", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            assert resp.status == 204


def tsm_bytes(path: Path) -> int:
    """The TSM files' bytes: what each further point costs. The series file and index
    beside them grow with series (nodes), not with points, and are preallocated."""
    return sum(p.stat().st_size for p in path.rglob("*.tsm"))


def at_rest(influx: InfluxDBServer, db: str, timeout: float = 300) -> int:
    """Bytes of the database's data folder once its WAL is empty and its size steady."""
    data, wal = influx.workdir / "data" / db, influx.workdir / "wal" / db
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        time.sleep(3)
        wal_left = sum(p.stat().st_size for p in wal.rglob("*.wal") if p.is_file())
        size = tsm_bytes(data)
        if wal_left == 0 and size == last:
            return size
        last = size
    raise RuntimeError(f"{db}: not at rest after {timeout} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=100, help="nodes per kind (default 100)")
    p.add_argument("--hours", type=float, default=24.0, help="hours of readings (default 24)")
    args = p.parse_args()
    rng = random.Random(1)
    start_ms = (int(time.time()) - int(args.hours * 3600) - 3600) * 1000
    print(f"InfluxDB 1.6, {args.nodes} nodes per kind, {args.hours:g} h at each kind's interval")
    print(
        "| kind | interval s | points | fields per point | TSM bytes | bytes per point | points/s written |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="influx-storage-") as tmp:
        influx = CompactingInfluxDB(Path(tmp) / "influxdb").start()
        try:
            for kind in KIND_FIELDS:
                db = f"bench_{kind}"
                influx.create_database(db)
                lines = lines_for(kind, args.nodes, args.hours, start_ms, rng)
                t0 = time.monotonic()
                write(influx, db, lines)
                rate = len(lines) / (time.monotonic() - t0)
                size = at_rest(influx, db)
                fields = lines[0].split(" ")[1].count(",") + 1
                print(
                    f"| {kind} | {DEFAULT_INTERVAL_S[kind]} | {len(lines)} | {fields} | {size} | "
                    f"{size / len(lines):.1f} | {rate:,.0f} |",
                    flush=True,
                )
        finally:
            influx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
