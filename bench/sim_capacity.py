"""How many virtual nodes `urbansense sim` sustains on this machine.

Runs a Fleet of N nodes (kinds in turn: air always on, the battery kinds duty-cycled)
against a private Mosquitto for a while and counts, per node, the readings that reached
the broker. The fleet is sustained when no node crashed and every node delivered at
least (duration / interval - 1) readings, i.e. kept its reporting interval.

    .venv/bin/python bench/sim_capacity.py [--nodes 300] [--interval 60] [--duration 240]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil.services import MosquittoServer  # noqa: E402
from hil.sim import Fleet  # noqa: E402
from protocols.catalog import KINDS  # noqa: E402


class ReadingCounter:
    def __init__(self, host: str, port: int) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="capacity")
        self.client.on_message = self.on_message
        self.client.connect(host, port)
        self.client.subscribe("city/v1/xuhui/bench/+/telemetry", qos=1)
        self.client.loop_start()

    def on_message(self, client, userdata, msg) -> None:
        obj = json.loads(msg.payload)
        with self.lock:
            self.counts[obj["node"]] += len(obj["batch"]) if "batch" in obj else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=240.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoServer(Path(tmp) / "broker")
        broker.start()
        counter = ReadingCounter(broker.host, broker.port)
        fleet = Fleet(
            broker.host,
            broker.port,
            "xuhui",
            "bench",
            list(KINDS),
            args.nodes,
            args.interval,
            1,
            Path(tmp) / "fleet",
        )
        t0 = time.monotonic()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        fleet.start(spread_s=args.interval)
        started = time.monotonic() - t0
        # Count from the moment the last node started, for `duration` seconds.
        with counter.lock:
            base = Counter(counter.counts)
        time.sleep(args.duration)
        with counter.lock:
            got = {n.node_id: counter.counts[n.node_id] - base[n.node_id] for n in fleet.nodes}
        load = os.getloadavg()[0]
        fleet.stop()
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        counter.client.loop_stop()
        broker.stop()
    expected = args.duration / args.interval
    crashed = [n.node_id for n in fleet.nodes if n.stats.crashes or n.stats.exit_code not in (None, 75, 76)]
    short = [nid for nid, c in got.items() if c < expected - 1]
    per_node = sorted(got.values())
    cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    print(
        f"nodes {args.nodes}, interval {args.interval:.0f} s, counted over {args.duration:.0f} s "
        f"(fleet took {started:.0f} s to start)"
    )
    print(
        f"readings per node: min {per_node[0]}, median {statistics.median(per_node):.0f}, "
        f"expected ~{expected:.1f}"
    )
    print(f"nodes short of their interval: {len(short)}; crashed: {len(crashed)}")
    print(
        f"node processes' CPU: {cpu_s:.0f} s over {time.monotonic() - t0:.0f} s "
        f"({cpu_s / (time.monotonic() - t0):.2f} cores); load average {load:.2f}"
    )
    print("SUSTAINED" if not short and not crashed else "NOT SUSTAINED")


if __name__ == "__main__":
    main()
