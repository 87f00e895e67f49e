"""Edge throughput: end-to-end rate (messages published -> points acknowledged by InfluxDB)
next to a bare paho-mqtt subscriber that only counts, on the same broker in the same run.

Both consumers are measured the same way, on a backlog: N QoS1 messages are queued at the
broker for the consumer's persistent session while it is away, then it connects and the
clock runs from the connection until the bare subscriber has counted N, or InfluxDB
holds N points (the edge).
This measures what the consumer sustains, not how fast this machine's publishers are. A
second figure has the edge consuming while the publishers run (live).

Besides the rates, each consumer's CPU time per message (user + system, read from /proc)
is printed: it moves less with the machine's other work than the rates do; so is the
broker's and InfluxDB's, since on one machine they share its cores with the consumer.
`--receiver process` (the default) runs the edge with its main session received in a
process of its own (`[mqtt] receiver`), `--receiver thread` in a thread of the edge. With
`--profile FILE` the edge's backlog drain is sampled with py-spy (`pip install py-spy`)
and the functions that hold the most samples are printed.

    .venv/bin/python bench/edge_throughput.py [--messages 50000] [--receiver thread|process]
        [--backlog-only] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from _edge_common import (
    DISTRICT,
    ZONE,
    EdgeProcess,
    Workspace,
    children,
    payloads,
    peak_rss_mb,
    publish,
    used_bytes,
    v1_sink,
    wait_for,
    write_config,
)


def subscribe_once(port: int, client_id: str) -> None:
    """Create the persistent session (QoS1 subscription) and leave."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"city/v1/{DISTRICT}/{ZONE}/+/telemetry", qos=1)
    c.on_subscribe = lambda *a: done.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(10)
    c.disconnect()
    c.loop_stop()


BARE = r"""
import sys, time, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, n = int(sys.argv[1]), int(sys.argv[2])
count = 0
first = last = None
done = threading.Event()
def on_message(c, u, m):
    global count, first, last
    now = time.monotonic()
    if first is None:
        first = now
    count += 1
    if count >= n:
        last = now
        done.set()
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-counter", clean_session=False)
c.on_message = on_message
t0 = time.monotonic()
cpu0 = time.process_time()
c.connect("127.0.0.1", port)
c.loop_start()
done.wait(600)
c.disconnect(); c.loop_stop()
print(count, last - t0, time.process_time() - cpu0)
"""


def bare_rate(ws: Workspace, n: int, msgs) -> float:
    subscribe_once(ws.mosquitto.port, "bare-counter")
    publish(ws.mosquitto.port, msgs, processes=2, client_prefix="bare-pub")
    broker0 = cpu_seconds(ws.mosquitto.process.pid)
    out = subprocess.run(
        [sys.executable, "-c", BARE, str(ws.mosquitto.port), str(n)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    broker = cpu_seconds(ws.mosquitto.process.pid) - broker0
    count, secs, cpu = out.stdout.split()
    assert int(count) >= n, out
    return {"rate": n / float(secs), "cpu_us": float(cpu) / n * 1e6, "broker_cpu_us": broker / n * 1e6}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (all its threads)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_with_children(pid: int) -> tuple[float, float]:
    """(CPU seconds of the process itself, of its living children)."""
    kids = 0.0
    for child in children(pid):
        try:
            kids += cpu_seconds(child)
        except OSError:
            pass  # ended meanwhile
    return cpu_seconds(pid), kids


def start_profile(pid: int, path: str) -> subprocess.Popen:
    """py-spy sampling the edge (every thread holding the GIL) in its raw (collapsed) format."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "250", "--gil", "--format", "raw", "-o", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_summary(path: str, top: int = 25) -> list[tuple[str, float, float]]:
    """(function, share of samples inside it, share with it on top) from py-spy's raw output."""
    inside: dict[str, int] = {}
    on_top: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [
            f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")").split(":")[0] for f in stack.split(";")
        ]
        for f in set(frames):
            inside[f] = inside.get(f, 0) + n
        if frames:
            on_top[frames[-1]] = on_top.get(frames[-1], 0) + n
    rows = sorted(inside, key=lambda f: -inside[f])[:top]
    return [(f, inside[f] / total, on_top.get(f, 0) / total) for f in rows]


def edge_config(
    ws: Workspace, folder_name: str, client_id: str, db: str, receiver: str, buffer: dict | None = None
):
    return write_config(
        ws.dir / folder_name,
        mqtt_port=ws.mosquitto.port,
        client_id=client_id,
        metrics=True,
        buffer=buffer,
        mqtt_extra={"receiver": receiver},
        sinks=[v1_sink("district", ws.influx, db, batch_wait_ms=100, retry_min_s=0.2, retry_max_s=5)],
    )


def points(ws: Workspace, db: str) -> int:
    """Points InfluxDB has acknowledged and holds (the end of the end-to-end path)."""
    try:
        return ws.influx.count("air", db, "pm25")
    except Exception:
        return 0


def holds(ws: Workspace, db: str, n: int) -> bool:
    """InfluxDB holds the n readings. Counted only once its write statistics say at
    least n points came in (readings, node health and rollups together): a count scans
    every point written, and at ten counts a second through a drain it was a third of
    InfluxDB's CPU, taken from the two cores the edge is measured on."""
    try:
        return ws.influx.points_written(db) >= n and points(ws, db) >= n
    except Exception:
        return False


def edge_backlog_rate(ws: Workspace, n: int, msgs, receiver: str, profile: str | None = None) -> dict:
    db = "bench_backlog"
    config = edge_config(ws, "edge-backlog", "edge-bench-backlog", db, receiver)
    edge = EdgeProcess(config).start()
    edge.stop()  # the session exists; the broker queues for it now
    publish(ws.mosquitto.port, msgs, processes=2, client_prefix="edge-pub")
    # The clock starts when the edge is connected (as the bare subscriber's does): the
    # ~1 s of Python imports at process start is not throughput.
    edge.start()
    t0 = time.monotonic()
    cpu0, kids0 = cpu_with_children(edge.proc.pid)
    servers0 = [cpu_seconds(s.process.pid) for s in (ws.mosquitto, ws.influx)]
    spy = start_profile(edge.proc.pid, profile) if profile else None
    peak_db = 0
    while True:
        peak_db = max(peak_db, used_bytes(edge.db_path) if edge.db_path.exists() else 0)
        if holds(ws, db, n):
            break
        if time.monotonic() - t0 > 900:
            raise SystemExit("edge did not finish in 15 minutes")
        time.sleep(0.1)
    secs = time.monotonic() - t0
    cpu, kids = cpu_with_children(edge.proc.pid)
    cpu, kids = cpu - cpu0, kids - kids0
    broker, influx = (cpu_seconds(s.process.pid) - c0 for s, c0 in zip((ws.mosquitto, ws.influx), servers0))
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        spy.wait(60)
    count = ws.influx.count("air", db, "pm25")
    rss = peak_rss_mb(edge.proc.pid)
    time.sleep(2.5)  # let the outbox be collected
    steady = used_bytes(edge.db_path)
    edge.stop()
    return {
        "rate": n / secs,
        "seconds": secs,
        "cpu_us": (cpu + kids) / n * 1e6,
        "receiver_cpu_us": kids / n * 1e6,
        "broker_cpu_us": broker / n * 1e6,
        "influx_cpu_us": influx / n * 1e6,
        "points": count,
        "rss_mb": rss,
        "peak_db_bytes_per_reading": peak_db / n,
        "steady_db_bytes_per_reading": steady / n,
    }


def edge_shared_backlog_rate(ws: Workspace, n: int, msgs, receiver: str, workers: int = 2) -> dict:
    """The same backlog drain with several workers splitting the zone (shared_group)."""
    db = "bench_shared"
    edges = []
    for w in range(workers):
        config = write_config(
            ws.dir / f"edge-shared-{w}",
            mqtt_port=ws.mosquitto.port,
            client_id=f"edge-bench-shared-{w}",
            metrics=True,
            mqtt_extra={"shared_group": "bench", "receiver": receiver},
            sinks=[v1_sink("district", ws.influx, db, batch_wait_ms=100, retry_min_s=0.2, retry_max_s=5)],
        )
        edge = EdgeProcess(config).start()
        edge.stop()
        edges.append(edge)
    publish(ws.mosquitto.port, msgs, processes=2, client_prefix="shared-pub")
    for edge in edges:
        edge.start()
    t0 = time.monotonic()
    wait_for(lambda: holds(ws, db, n), 900, 0.1, "shared points")
    secs = time.monotonic() - t0
    count = points(ws, db)
    for edge in edges:
        edge.stop()
    return {"rate": n / secs, "points": count}


def edge_live_rate(ws: Workspace, n: int, msgs, receiver: str) -> dict:
    db = "bench_live"
    config = edge_config(ws, "edge-live", "edge-bench-live", db, receiver)
    edge = EdgeProcess(config).start()
    t0 = time.monotonic()
    pub_secs = publish(ws.mosquitto.port, msgs, processes=2, client_prefix="live-pub")
    wait_for(lambda: holds(ws, db, n), 900, 0.1, "live points")
    secs = time.monotonic() - t0
    count = ws.influx.count("air", db, "pm25")
    rss = peak_rss_mb(edge.proc.pid)
    edge.stop()
    return {"rate": n / secs, "publish_rate": n / pub_secs, "points": count, "rss_mb": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--backlog-only", action="store_true", help="measure the bare subscriber and the backlog drain only"
    )
    ap.add_argument(
        "--receiver",
        choices=["thread", "process"],
        default="process",
        help="where the edge receives its main MQTT session ([mqtt] receiver; default: process)",
    )
    ap.add_argument(
        "--broker-inflight",
        type=int,
        metavar="N",
        help="the broker's max_inflight_messages (QoS 1 messages unacknowledged per session; deployed: 100)",
    )
    ap.add_argument("--profile", metavar="FILE", help="sample the edge's backlog drain with py-spy into FILE")
    args = ap.parse_args()
    n = args.messages
    with Workspace(broker_inflight=args.broker_inflight) as ws:
        bare = bare_rate(ws, n, payloads(n, prefix="x"))
        backlog = edge_backlog_rate(ws, n, payloads(n, prefix="e"), args.receiver, args.profile)
        if args.backlog_only:
            live = shared = {"rate": 0, "publish_rate": 0, "points": 0, "rss_mb": None}
        else:
            live = edge_live_rate(ws, n, payloads(n, prefix="l"), args.receiver)
            shared = edge_shared_backlog_rate(ws, n, payloads(n, prefix="s"), args.receiver)
    result = {
        "messages": n,
        "receiver": args.receiver,
        "broker_inflight": args.broker_inflight or 100,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "bare_subscriber_msgs_per_s": round(bare["rate"]),
        "edge_backlog_msgs_per_s": round(backlog["rate"]),
        "ratio": round(backlog["rate"] / bare["rate"], 3),
        "bare_subscriber_cpu_us_per_msg": round(bare["cpu_us"], 1),
        "edge_backlog_cpu_us_per_msg": round(backlog["cpu_us"], 1),
        "edge_receiver_cpu_us_per_msg": round(backlog["receiver_cpu_us"], 1),
        "broker_cpu_us_per_msg_bare": round(bare["broker_cpu_us"], 1),
        "broker_cpu_us_per_msg_edge": round(backlog["broker_cpu_us"], 1),
        "influx_cpu_us_per_msg_edge": round(backlog["influx_cpu_us"], 1),
        "edge_backlog_points": backlog["points"],
        "edge_live_msgs_per_s": round(live["rate"]),
        "live_publish_msgs_per_s": round(live["publish_rate"]),
        "edge_live_points": live["points"],
        "edge_2_workers_msgs_per_s": round(shared["rate"]),
        "edge_2_workers_points": shared["points"],
        "edge_peak_rss_mb": round(max(backlog["rss_mb"] or 0, live["rss_mb"] or 0), 1),
        "buffer_peak_bytes_per_reading": round(backlog["peak_db_bytes_per_reading"], 1),
        "buffer_steady_bytes_per_reading": round(backlog["steady_db_bytes_per_reading"], 1),
    }
    if args.profile:
        result["profile"] = [
            {"function": f, "inside": round(a, 3), "on_top": round(b, 3)}
            for f, a, b in profile_summary(args.profile)
        ]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"messages                          {n}   (edge receiver: {args.receiver}; "
        f"broker max_inflight_messages {result['broker_inflight']})"
    )
    print(f"bare paho subscriber (count only)  {result['bare_subscriber_msgs_per_s']:>8} msg/s")
    print(
        f"edge end-to-end (backlog drain)    {result['edge_backlog_msgs_per_s']:>8} msg/s   "
        f"ratio {result['ratio']:.2f}   points in InfluxDB {backlog['points']}/{n}"
    )
    print(
        f"edge end-to-end (live, publishers {result['live_publish_msgs_per_s']} msg/s) "
        f"{result['edge_live_msgs_per_s']:>8} msg/s   points {live['points']}/{n}"
    )
    print(
        f"edge, 2 workers (shared_group)     {result['edge_2_workers_msgs_per_s']:>8} msg/s   "
        f"ratio {shared['rate'] / bare['rate']:.2f}   points {shared['points']}/{n}"
    )
    print(
        f"CPU per message                    bare {result['bare_subscriber_cpu_us_per_msg']} us, "
        f"edge (backlog) {result['edge_backlog_cpu_us_per_msg']} us "
        f"(of which the receiving process {result['edge_receiver_cpu_us_per_msg']} us)"
    )
    print(
        f"CPU per message, servers           Mosquitto {result['broker_cpu_us_per_msg_bare']} us (bare), "
        f"{result['broker_cpu_us_per_msg_edge']} us (edge); InfluxDB {result['influx_cpu_us_per_msg_edge']} us"
    )
    print(f"load average (1, 5, 15 min)        {result['load_average']}")
    print(f"edge peak RSS                      {result['edge_peak_rss_mb']:>8} MB")
    print(
        f"buffer bytes per reading           {result['buffer_peak_bytes_per_reading']:>8} at peak, "
        f"{result['buffer_steady_bytes_per_reading']} once forwarded (identity index)"
    )
    for row in result.get("profile", []):
        print(f"  {row['inside']:6.1%} inside, {row['on_top']:6.1%} on top  {row['function']}")


if __name__ == "__main__":
    main()
