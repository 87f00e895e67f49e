"""How long node B's alarm waits behind node A's crafted payloads (goal: under 250 ms for
300 of them), and what one crafted payload costs the edge's depth scan.

A crafted payload is a few dozen `[` and then an unterminated run of `\\"`, just under
8 KiB: the worst case for a backtracking string pattern. A publishes N of them on its
own event topic (the lane B's alarm takes too), every PUBACK awaited; then B raises one
alarm, and the time from B's publish to the alarm on `alarms/v1/...` is measured. Runs
on a fresh edge each: with the site's event limit (`event_rate` 0.5/s, `event_burst` 20)
and with the limit off (every crafted payload reaches the depth scan).

    .venv/bin/python bench/crafted_flood.py [--counts 60,300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import paho.mqtt.client as mqtt
from _edge_common import DISTRICT, ZONE, EdgeProcess, Workspace, v1_sink, write_config
from paho.mqtt.enums import CallbackAPIVersion

from edge.limits import MAX_BATCH_BYTES, MAX_DEPTH, nesting_depth
from protocols import codec

A, B = "p-0001", "m-0002"


def topic(node: str, channel: str) -> str:
    return f"city/v1/{DISTRICT}/{ZONE}/{node}/{channel}"


def crafted(seq: int) -> bytes:
    head = b"[" * (MAX_DEPTH + 8) + b'"' + str(seq).encode()
    return head + b'\\"' * ((MAX_BATCH_BYTES - 100 - len(head)) // 2)


def scan_cost_ms(payload: bytes, rounds: int = 200) -> float:
    t0 = time.perf_counter()
    for _ in range(rounds):
        nesting_depth(payload)
    return (time.perf_counter() - t0) * 1000 / rounds


def client(port: int, client_id: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def run(ws: Workspace, name: str, count: int, limited: bool) -> float:
    """ms from B's alarm publish to the alarm on the alarms topic."""
    limits = {"event_rate": 0.5, "event_burst": 20} if limited else {"event_rate": 0}
    config = write_config(
        ws.dir / f"edge-{name}",
        mqtt_port=ws.mosquitto.port,
        client_id=f"edge-{name}",
        sinks=[v1_sink("district", ws.influx, f"crafted_{name}")],
        extra={"limits": limits},
    )
    edge = EdgeProcess(config).start()
    got = threading.Event()
    arrived: list[float] = []

    def on_alarm(c, u, m) -> None:
        if json.loads(m.payload).get("node") == B:
            arrived.append(time.time())
            got.set()

    sub = client(ws.mosquitto.port, f"alarms-{name}")
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = on_alarm
    sub.subscribe(f"alarms/v1/{DISTRICT}/{ZONE}/#", qos=1)
    subscribed.wait(10)
    a, b = client(ws.mosquitto.port, f"a-{name}"), client(ws.mosquitto.port, f"b-{name}")
    infos = [a.publish(topic(A, "event"), crafted(i), qos=1) for i in range(count)]
    for info in infos:
        info.wait_for_publish(120)
    alarm = codec.encode_event(B, "manhole", 1, 0, "cover-open", True, ts=int(time.time() * 1000))
    sent = time.time()
    b.publish(topic(B, "event"), alarm, qos=1)
    if not got.wait(600):
        raise SystemExit(f"{name}: B's alarm never arrived")
    for c in (a, b, sub):
        c.loop_stop()
    edge.stop()
    return (arrived[0] - sent) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="60,300", help="crafted payloads A sends before B's alarm")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (the median is printed)")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    sample = crafted(1)
    normal = json.dumps(
        {"v": 1, "node": A, "kind": "air", "batch": [{"boot": 1, "seq": i, "pm25": 1.0} for i in range(120)]}
    ).encode()[:MAX_BATCH_BYTES]
    print(
        f"depth scan of one crafted payload ({len(sample)} bytes): {scan_cost_ms(sample):.3f} ms; "
        f"of a {len(normal)}-byte batch with {normal.count(b'{')} objects: {scan_cost_ms(normal):.3f} ms"
    )
    print(
        f"{'A sends':>8} {'event limit':>12} {'B alarm -> alarms topic (median of ' + str(args.repeat) + ')':>40}"
    )
    with Workspace() as ws:
        for count in counts:
            for limited in (True, False):
                runs = [
                    run(ws, f"{count}-{'lim' if limited else 'off'}-{r}", count, limited)
                    for r in range(args.repeat)
                ]
                label = "0.5/s, 20" if limited else "off"
                print(
                    f"{count:>8} {label:>12} {statistics.median(runs):>37.1f} ms  (runs: "
                    + ", ".join(f"{x:.0f}" for x in runs)
                    + ")"
                )


if __name__ == "__main__":
    main()
