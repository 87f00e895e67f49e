"""What receipts cost at the broker: messages per reading with and without them, in one run.

A private Mosquitto and InfluxDB and a real edge; nodes played by paho clients, each
subscribed to its own receipt topic as firmware is (QoS 1), publishing readings at a
paced rate: one reading per message (a node reporting), then batches (a node replaying
its queue). The same load runs with `[receipts] enabled = true` and `false`. Counted per
reading: the PUBLISH messages through the broker (node -> broker, broker -> edge, and
with receipts edge -> broker and broker -> node), each answered by a PUBACK (QoS 1). The
counts are taken at the ends, where they are exact: Mosquitto's own $SYS publish counters
leave out retained messages (receipts are retained) and count its $SYS messages. And the
edge's CPU time (user + system, from /proc) per reading over the run.

--firmware: the real firmware instead (a duty-cycled parking node under MicroPython, one
reading a wake, bench/firmware_flash.py's write counter loaded before it) against the
same broker, InfluxDB and edge, receipts on and off: node -> broker telemetry messages
and receipts per reading (counted by a subscriber at the broker), the node's awake time
per duty cycle (its own `awake N ms`) and flash writes per reading. With receipts off the
node confirms nothing and sends its queue again after 2, 4, 8... intervals (SPEC 7.1.3).
The node is woken by its pin (a pin wake samples whatever the interval), a wake right
after the one before: with `--interval 0.2` the resend delays (0.4 s, 0.8 s...) run out
between wakes as they would over hours; with `--interval 60` no delay runs out in the run.

    .venv/bin/python bench/receipts_cost.py [--nodes 20] [--readings 2000] [--rate 200] [--batch 16]
    .venv/bin/python bench/receipts_cost.py --firmware [--wakes 30] [--interval 0.2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # firmware_flash's write counter

from firmware_flash import argv as counting_argv  # noqa: E402
from firmware_flash import count as flash_writes  # noqa: E402
from firmware_flash import flash_dir  # noqa: E402

from hil.services import InfluxDBServer, MosquittoServer  # noqa: E402
from hil.sim import SLEEP_EXIT  # noqa: E402
from hil.sim_build import NODE_MICROPYPATH, build_bundle, install, sleep_as_asked  # noqa: E402
from protocols import codec  # noqa: E402
from protocols.topics import RECEIPT, TELEMETRY, receipt_topic, zone_filter  # noqa: E402
from tests.support.edge_process import EdgeProcess, v1_sink, write_config  # noqa: E402
from tests.support.metrics import metric  # noqa: E402
from tests.support.site import DISTRICT, ZONE, topic  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Node:
    """A node's MQTT side: publishes its readings, reads its own receipts."""

    def __init__(self, port: int, name: str) -> None:
        self.name = name
        self.receipts = 0
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, clean_session=True)
        self.client.max_inflight_messages_set(20)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(receipt_topic(DISTRICT, ZONE, name), qos=1)
        subscribed.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        codec.decode_receipt(msg.payload, self.name)
        self.receipts += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def messages(nodes: list[str], readings: int, batch: int, start_ms: int) -> list[tuple[int, str, bytes]]:
    """(node index, topic, payload): `readings` air readings spread over the nodes,
    `batch` to a message, the nodes interleaved as a site's nodes report side by side."""
    per_node = readings // len(nodes)
    mine: list[list[tuple[int, str, bytes]]] = []
    for k, node in enumerate(nodes):
        items = [
            codec.reading_item(1, s, {"pm25": float(s % 500), "battery_v": 3.6}, ts=start_ms + k * 1000 + s)
            for s in range(per_node)
        ]
        out = []
        for i in range(0, per_node, batch):
            part = items[i : i + batch]
            if batch == 1:
                r = part[0]
                payload = codec.encode_reading(node, "air", 1, r["seq"], r["fields"], ts=r["ts"])
            else:
                payload = codec.encode_batch(node, "air", part)
            out.append((k, topic(node, "telemetry"), payload))
        mine.append(out)
    return [m for turn in zip(*mine) for m in turn]


@contextmanager
def servers(folder: Path, tag: str, receipts: bool, broker_config: str = "") -> Iterator[tuple]:
    """A private Mosquitto and InfluxDB and an edge on them, receipts on or off: (broker,
    edge). The servers are stopped afterwards; the edge is the caller's to stop."""
    mq = MosquittoServer(folder / f"mosquitto-{tag}", extra_config=broker_config)
    influx = InfluxDBServer(folder / f"influx-{tag}")
    mq.start()
    influx.start()
    try:
        config = write_config(
            folder / f"edge-{tag}",
            mqtt_port=mq.port,
            client_id="edge-bench",
            metrics=True,
            sinks=[v1_sink("district", influx, "bench_receipts")],
            extra={"receipts": {"enabled": receipts}},
        )
        yield mq, EdgeProcess(config).start()
    finally:
        mq.stop()
        influx.stop()


def run(folder: Path, receipts: bool, args, batch: int, tag: str) -> dict:
    with servers(folder, tag, receipts, "max_queued_bytes 0") as (mq, edge):
        nodes = [Node(mq.port, f"b-{i:04d}") for i in range(args.nodes)]
        msgs = messages([n.name for n in nodes], args.readings, batch, int(time.time() * 1000) - 3_600_000)
        readings = args.readings // args.nodes * args.nodes
        cpu = cpu_seconds(edge.proc.pid)
        pause = 1.0 / (args.rate / batch)
        t0 = time.monotonic()
        for i, (k, t, p) in enumerate(msgs):
            nodes[k].client.publish(t, p, qos=1)
            time.sleep(max(0.0, t0 + (i + 1) * pause - time.monotonic()))
        wait_for(
            lambda: (metric(edge.metrics_text(), "urbansense_edge_readings_total") or 0) >= readings,
            300,
            0.1,
            "every reading committed",
        )
        text = edge.metrics_text()
        published = metric(text, "urbansense_edge_receipts_published_total") or 0
        to_edge = metric(text, "urbansense_edge_messages_in_total", 'channel="telemetry"') or 0
        wait_for(lambda: sum(n.receipts for n in nodes) >= published, 60, 0.1, "every receipt delivered")
        delivered = sum(n.receipts for n in nodes)
        cpu = cpu_seconds(edge.proc.pid) - cpu
        for n in nodes:
            n.close()
        edge.stop()
    publish = len(msgs) + to_edge + published + delivered
    return {
        "readings": readings,
        "receipts": published,
        "publish": publish / readings,
        "cpu_us": cpu / readings * 1e6,
    }


class BrokerCount:
    """A subscriber at the broker counting the zone's telemetry messages (and the readings
    in them) and receipts: each message a node or the edge publishes arrives here once."""

    def __init__(self, port: int) -> None:
        self.telemetry = self.readings = self.receipts = 0
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-count", clean_session=True)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(zone_filter(DISTRICT, ZONE, c), 1) for c in (TELEMETRY, RECEIPT)])
        subscribed.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        if msg.retain:
            return  # a retained receipt of before this subscriber, counted when published
        if msg.topic.endswith("/" + TELEMETRY):
            self.telemetry += 1
            self.readings += msg.payload.count(b'"seq"')
        else:
            self.receipts += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def firmware_run(folder: Path, bundle: Path, receipts: bool, wakes: int, interval: float) -> dict:
    tag = f"{'on' if receipts else 'off'}-{int(interval * 1000)}"
    with servers(folder, f"fw-{tag}", receipts) as (mq, edge):
        counter = BrokerCount(mq.port)
        flash = flash_dir(folder, mq, f"fw-{tag}", "duty-cycled", interval)
        install(bundle, flash)
        env = dict(os.environ, MICROPYPATH=NODE_MICROPYPATH)
        awake = []
        first = True
        for _ in range(wakes):
            proc = subprocess.run(
                counting_argv(), cwd=flash, env=env, capture_output=True, text=True, timeout=60
            )
            if proc.returncode != SLEEP_EXIT:
                raise SystemExit(f"node exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
            awake.append(int(re.search(r" awake (\d+) ms", proc.stdout).group(1)))
            sleep_as_asked(flash, 0.2)
            if first:  # the first wake is a power-on; every later one a pin wake
                env["URBANSENSE_WAKE"] = "pin"
                first = False
        taken = len((flash / "taken.log").read_text().splitlines())
        wait_for(
            lambda: (metric(edge.metrics_text(), "urbansense_edge_readings_total") or 0) >= taken,
            120,
            0.1,
            "every reading committed",
        )
        published = metric(edge.metrics_text(), "urbansense_edge_receipts_published_total") or 0
        wait_for(lambda: counter.receipts >= published, 30, 0.1, "every receipt counted")
        counter.close()
        edge.stop()
    writes = flash_writes(flash)
    return {
        "readings": taken,
        "telemetry": counter.telemetry / taken,
        "sent": counter.readings / taken,
        "receipts": counter.receipts / taken,
        "awake": (statistics.median(awake), max(awake)),
        "flash": sum(writes[k] for k in ("queue record", "queue head", "other state")) / taken,
    }


def firmware_main(wakes: int, interval: float) -> None:
    folder = Path(tempfile.mkdtemp(prefix="urbansense-bench-receipts-fw-"))
    try:
        bundle = build_bundle(folder / "bundle")
        print(
            f"a duty-cycled parking node under MicroPython, {wakes} pin wakes, one reading each, interval {interval:g} s"
        )
        print(
            f"{'receipts':<9}{'readings':>9}   per reading: {'telemetry msgs':>15}{'readings sent':>14}"
            f"{'receipts':>9}{'flash writes':>13}   awake ms (median/max)"
        )
        for receipts in (False, True):
            r = firmware_run(folder, bundle, receipts, wakes, interval)
            print(
                f"{'on' if receipts else 'off':<9}{r['readings']:>9}{'':>16}{r['telemetry']:>15.2f}"
                f"{r['sent']:>14.2f}{r['receipts']:>9.2f}{r['flash']:>13.2f}   "
                f"{r['awake'][0]:.0f} / {r['awake'][1]}"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20, help="nodes publishing side by side")
    ap.add_argument("--readings", type=int, default=2000, help="readings per run")
    ap.add_argument("--rate", type=float, default=200.0, help="readings per second, all nodes together")
    ap.add_argument("--batch", type=int, default=16, help="readings per message in the replay runs")
    ap.add_argument("--firmware", action="store_true", help="a real firmware node instead of paho clients")
    ap.add_argument("--wakes", type=int, default=30, help="--firmware: duty cycles, one reading each")
    ap.add_argument("--interval", type=float, default=0.2, help="--firmware: the node's interval_s")
    args = ap.parse_args()
    if args.firmware:
        firmware_main(args.wakes, args.interval)
        return
    folder = Path(tempfile.mkdtemp(prefix="urbansense-bench-receipts-"))
    try:
        print(f"{args.nodes} nodes, {args.readings} readings per run at {args.rate:g}/s")
        print(
            f"{'messages':<22}{'receipts':>9}   per reading: {'receipts':>9}{'PUBLISH':>9}{'MQTT packets':>14}"
            f"{'edge CPU us':>13}"
        )
        for batch, what in ((1, "one reading each"), (args.batch, f"batches of {args.batch}")):
            for receipts in (False, True):
                r = run(folder, receipts, args, batch, f"{batch}-{receipts}")
                print(
                    f"{what:<22}{'on' if receipts else 'off':>9}{'':>15}{r['receipts'] / r['readings']:>9.3f}"
                    f"{r['publish']:>9.3f}{2 * r['publish']:>14.3f}{r['cpu_us']:>13.0f}"
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
