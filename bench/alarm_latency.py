"""Alarm latency: event published -> visible in InfluxDB, and -> received on its
alarms/v1/... topic, p50 and p99, while telemetry flows at 80 % of the edge's measured
maximum rate (goal: p99 under 250 ms).

The maximum is measured first in the same run, unless given with --max-rate: the live
end-to-end rate of edge_throughput.py (publishers and edge running together), since the
publishers themselves take CPU from the same two cores during the test.

    .venv/bin/python bench/alarm_latency.py [--events 200] [--max-rate N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.parse
import urllib.request

import paho.mqtt.client as mqtt
from _edge_common import (
    DISTRICT,
    ZONE,
    EdgeProcess,
    Workspace,
    metric,
    payloads,
    publish_background,
    v1_sink,
    wait_for,
    write_config,
)
from paho.mqtt.enums import CallbackAPIVersion

from protocols import codec


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--interval-ms", type=float, default=50.0, help="time between events")
    ap.add_argument("--max-rate", type=float, default=None, help="skip measuring the maximum")
    ap.add_argument("--load", type=float, default=0.8, help="telemetry as a share of the maximum")
    ap.add_argument(
        "--receiver",
        choices=["thread", "process"],
        default="thread",
        help="where the edge receives its main session ([mqtt] receiver; default: thread)",
    )
    args = ap.parse_args()
    with Workspace() as ws:
        if args.max_rate is None:
            from edge_throughput import edge_live_rate

            max_rate = edge_live_rate(ws, 30000, payloads(30000, prefix="m"), args.receiver)["rate"]
        else:
            max_rate = args.max_rate
        rate = max_rate * args.load
        db = "bench_alarms"
        config = write_config(
            ws.dir / "edge-alarms",
            mqtt_port=ws.mosquitto.port,
            client_id="edge-alarms",
            metrics=True,
            mqtt_extra={"receiver": args.receiver},
            sinks=[v1_sink("district", ws.influx, db, batch_wait_ms=100)],
        )
        edge = EdgeProcess(config).start()

        duration = args.events * args.interval_ms / 1000 + 6
        n_tel = int(rate * duration)
        background = publish_background(
            ws.mosquitto.port, payloads(n_tel, prefix="t", age=True), processes=2, rate=rate
        )
        time.sleep(2.0)  # telemetry at full flow before the first event

        sent: dict[int, float] = {}
        on_topic: dict[int, float] = {}
        in_db: dict[int, float] = {}
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alarm-consumer")

        def on_message(c, u, m):
            now = time.time()
            body = json.loads(m.payload)
            on_topic.setdefault(int(body["value"]), now)

        subscribed = threading.Event()
        sub.on_message = on_message
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.connect("127.0.0.1", ws.mosquitto.port)
        sub.subscribe(f"alarms/v1/{DISTRICT}/{ZONE}/#", qos=1)
        sub.loop_start()
        subscribed.wait(10)

        stop = threading.Event()
        start_ms = int(time.time() * 1000) - 1000

        def poll():
            q = urllib.parse.urlencode(
                {"db": db, "epoch": "ms", "q": f"SELECT value FROM events WHERE time >= {start_ms}ms"}
            )
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(f"{ws.influx.url}/query?{q}", timeout=5) as resp:
                        body = json.load(resp)
                    now = time.time()
                    for s in body["results"][0].get("series", []):
                        for _t, v in s["values"]:
                            in_db.setdefault(int(v), now)
                except OSError:
                    pass
                time.sleep(0.005)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alarm-node")
        pub.connect("127.0.0.1", ws.mosquitto.port)
        pub.loop_start()
        readings_before = metric(edge.metrics_text(), "urbansense_edge_readings_total")
        t_first = time.monotonic()
        for i in range(args.events):
            node = f"m-{i % 50:04d}"
            payload = codec.encode_event(
                node,
                "manhole",
                1,
                10_000 + i,
                "cover-open",
                i % 2 == 0,
                value=float(i),
                ts=int(time.time() * 1000),
            )
            sent[i] = time.time()
            pub.publish(f"city/v1/{DISTRICT}/{ZONE}/{node}/event", payload, qos=1)
            time.sleep(args.interval_ms / 1000)
        readings_during = metric(edge.metrics_text(), "urbansense_edge_readings_total") - readings_before
        actual_rate = readings_during / (time.monotonic() - t_first)
        wait_for(lambda: len(in_db) >= args.events and len(on_topic) >= args.events, 60, 0.1, "every alarm")
        stop.set()
        arrivals = dict(
            edge.query("SELECT seq - 10000, at_ms FROM seen WHERE node LIKE 'm-%' AND seq >= 10000")
        )
        background.join(120)
        pub.loop_stop()
        sub.loop_stop()
        edge.stop()

    db_ms = [(in_db[i] - sent[i]) * 1000 for i in sent]
    edge_in_ms = [arrivals[i] - sent[i] * 1000 for i in sent if i in arrivals]
    topic_ms = [(on_topic[i] - sent[i]) * 1000 for i in sent]
    print(
        f"maximum edge rate           {max_rate:8.0f} msg/s ({'live, publishers running' if args.max_rate is None else 'given'})"
    )
    print(f"telemetry offered           {rate:8.0f} msg/s ({args.load:.0%} of the maximum)")
    print(
        f"telemetry committed         {actual_rate:8.0f} msg/s while the events were sent "
        f"({actual_rate / max_rate:.0%} of the maximum)"
    )
    print(f"events                      {len(sent)}, one every {args.interval_ms:.0f} ms")
    print(
        f"publish -> alarms topic     p50 {statistics.median(topic_ms):6.1f} ms   p99 {pct(topic_ms, 99):6.1f} ms"
        f"   max {max(topic_ms):6.1f} ms"
    )
    print(
        f"publish -> edge receives    p50 {statistics.median(edge_in_ms):6.1f} ms   p99 {pct(edge_in_ms, 99):6.1f} ms"
        f"   max {max(edge_in_ms):6.1f} ms"
    )
    print(
        f"publish -> InfluxDB query   p50 {statistics.median(db_ms):6.1f} ms   p99 {pct(db_ms, 99):6.1f} ms"
        f"   max {max(db_ms):6.1f} ms   (polled every ~5 ms)"
    )


if __name__ == "__main__":
    main()
