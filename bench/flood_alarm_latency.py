"""Alarm latency of well-behaved nodes while one node floods: publish -> alarms/v1/... topic
and publish -> edge receipt, p50 and p99 (goal: p99 under 250 ms), in runs on a fresh
edge each: no flooder, a flooder at 10x its normal rate, a flooder at full speed, and the
full-speed flooder again with the rate limit off (what the limit buys).

The edge runs with the per-node rate limit in "auto" mode (5x each node's reporting
interval); every node reports a 5 s interval in its status first. The other nodes send
telemetry at their normal rate throughout, and raise the alarms that are timed.

    .venv/bin/python bench/flood_alarm_latency.py [--nodes 1000] [--events 200] [--fast-rate 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import paho.mqtt.client as mqtt
from _edge_common import (
    DISTRICT,
    ZONE,
    EdgeProcess,
    Workspace,
    metric,
    publish,
    publish_background,
    v1_sink,
    wait_for,
    write_config,
)
from alarm_latency import pct
from paho.mqtt.enums import CallbackAPIVersion

from protocols import codec

INTERVAL_S = 5  # every node's reporting interval (the protocol's shortest)
FLOODER = "f-0000"
BURST = 10  # the bench's bucket depth (default 30): the 10x flooder runs dry sooner
LEAD_S = 12.0  # the flooder starts this long before the alarms, so its bucket is empty


def topic(node: str, channel: str) -> str:
    return f"city/v1/{DISTRICT}/{ZONE}/{node}/{channel}"


def statuses(nodes: list[str]) -> list[tuple[str, bytes]]:
    return [
        (
            topic(n, "status"),
            codec.encode_status(n, "air", 1, 0, "online", interval_s=INTERVAL_S, ts=int(time.time() * 1000)),
        )
        for n in nodes
    ]


def telemetry(nodes: list[str], count: int, seq0: int = 1) -> list[tuple[str, bytes]]:
    out = []
    for i in range(count):
        n = nodes[i % len(nodes)]
        out.append(
            (
                topic(n, "telemetry"),
                codec.encode_reading(
                    n, "air", 1, seq0 + i // len(nodes), {"pm25": float(i % 300)}, age_ms=1000
                ),
            )
        )
    return out


def run(
    ws: Workspace,
    name: str,
    nodes: list[str],
    flood_rate: float,
    events: int,
    interval_ms: float,
    limited: bool = True,
) -> dict:
    config = write_config(
        ws.dir / f"edge-{name}",
        mqtt_port=ws.mosquitto.port,
        client_id=f"edge-{name}",
        metrics=True,
        sinks=[v1_sink("district", ws.influx, f"flood_{name}")],
        extra={
            "limits": {
                "node_rate": "auto" if limited else 0,
                "node_burst": BURST,
                "event_rate": 0.5 if limited else 0,
                "event_burst": 20,
            }
        },
    )
    edge = EdgeProcess(config).start()
    publish(ws.mosquitto.port, statuses(nodes + [FLOODER]), processes=1, client_prefix=f"st-{name}")
    wait_for(
        lambda: edge.query("SELECT count(*) FROM nodes WHERE interval_s IS NOT NULL")[0][0] > len(nodes),
        30,
        what="every node's status",
    )
    duration = events * interval_ms / 1000 + 4
    normal_rate = len(nodes) / INTERVAL_S
    flood_sent = int(flood_rate * (duration + LEAD_S))
    background = []
    if flood_rate:
        background.append(
            publish_background(
                ws.mosquitto.port,
                telemetry([FLOODER], flood_sent),
                rate=flood_rate,
                client_prefix=f"flood-{name}",
            )
        )
        time.sleep(LEAD_S - 2.0)
    background.append(
        publish_background(
            ws.mosquitto.port,
            telemetry(nodes, int(normal_rate * duration)),
            rate=normal_rate,
            client_prefix=f"tel-{name}",
        )
    )
    time.sleep(2.0)  # telemetry and flood at full flow before the first alarm

    sent: dict[int, float] = {}
    on_topic: dict[int, float] = {}
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"alarm-consumer-{name}")
    sub.on_message = lambda c, u, m: on_topic.setdefault(int(json.loads(m.payload)["value"]), time.time())
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", ws.mosquitto.port)
    sub.subscribe(f"alarms/v1/{DISTRICT}/{ZONE}/#", qos=1)
    sub.loop_start()
    subscribed.wait(10)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"alarm-nodes-{name}")
    pub.connect("127.0.0.1", ws.mosquitto.port)
    pub.loop_start()
    for i in range(events):
        node = nodes[i % len(nodes)]
        payload = codec.encode_event(
            node, "air", 1, 100_000 + i, "pm25", i % 2 == 0, value=float(i), ts=int(time.time() * 1000)
        )
        sent[i] = time.time()
        pub.publish(topic(node, "event"), payload, qos=1)
        time.sleep(interval_ms / 1000)
    wait_for(lambda: len(on_topic) >= events, 60, 0.1, "every alarm")
    for proc in background:
        proc.join(120)
    text = edge.metrics_text()
    total_throttled = metric(text, "urbansense_edge_invalid_messages_total", 'reason="rate_limited"') or 0
    flooder_throttled = metric(text, "urbansense_edge_throttled_messages_total", f'node="{FLOODER}"') or 0
    arrivals = dict(edge.query("SELECT seq - 100000, at_ms FROM seen WHERE seq >= 100000"))
    pub.loop_stop()
    sub.loop_stop()
    edge.stop()
    topic_ms = [(on_topic[i] - sent[i]) * 1000 for i in sent]
    edge_ms = [arrivals[i] - sent[i] * 1000 for i in sent if i in arrivals]
    return {
        "name": name,
        "flood_rate": flood_rate,
        "flood_sent": flood_sent if flood_rate else 0,
        "flooder_throttled": flooder_throttled,
        "others_throttled": total_throttled - flooder_throttled,
        "topic_p50": statistics.median(topic_ms),
        "topic_p99": pct(topic_ms, 99),
        "topic_max": max(topic_ms),
        "edge_p50": statistics.median(edge_ms),
        "edge_p99": pct(edge_ms, 99),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000, help="well-behaved nodes (5 s interval each)")
    ap.add_argument("--events", type=int, default=200, help="alarms timed per run")
    ap.add_argument("--interval-ms", type=float, default=50.0, help="time between alarms")
    ap.add_argument("--fast-rate", type=float, default=2000.0, help="the full-speed flooder, msg/s")
    args = ap.parse_args()
    nodes = [f"n-{i:04d}" for i in range(args.nodes)]
    normal = 1 / INTERVAL_S
    results = []
    with Workspace() as ws:
        for name, rate, limited in (
            ("none", 0.0, True),
            ("10x", 10 * normal, True),
            ("fast", args.fast_rate, True),
            ("fast-nolimit", args.fast_rate, False),
        ):
            results.append(run(ws, name, nodes, rate, args.events, args.interval_ms, limited))
    print(
        f"{args.nodes} nodes at one message per {INTERVAL_S} s ({args.nodes * normal:.0f} msg/s), "
        f"{args.events} alarms from them, one every {args.interval_ms:.0f} ms; "
        f"limit: auto (5x each node's interval = {5 * normal:.1f} msg/s), burst {BURST}; "
        f"the flooder starts {LEAD_S:.0f} s before the alarms"
    )
    print("fast-nolimit: the same full-speed flooder with the rate limit off, for comparison")
    print(
        f"{'flooder':<22} {'sent':>7} {'throttled':>9} {'others thr.':>11} "
        f"{'alarm topic p50':>15} {'p99':>7} {'max':>7} {'edge in p50':>11} {'p99':>7}"
    )
    for r in results:
        label = "none" if not r["flood_rate"] else f"{r['name']} ({r['flood_rate']:.0f}/s)"
        print(
            f"{label:<22} {r['flood_sent']:>7} {r['flooder_throttled']:>9.0f} {r['others_throttled']:>11.0f} "
            f"{r['topic_p50']:>12.1f} ms {r['topic_p99']:>4.1f} ms {r['topic_max']:>4.1f} ms "
            f"{r['edge_p50']:>8.1f} ms {r['edge_p99']:>4.1f} ms"
        )


if __name__ == "__main__":
    main()
