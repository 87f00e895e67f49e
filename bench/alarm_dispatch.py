"""Alarm dispatch latency: stimulus on the node -> notification received by the
institution's webhook, p50 and p99; and clear -> resolution received.

Real parts end to end: manhole nodes (the firmware under the MicroPython unix port,
always on, sampling every --interval s), Mosquitto, the edge (with an InfluxDB sink and
[alertmanager] delivery), a private Alertmanager configured by `urbansense alarms config`
from a responsibility file, and the institution's webhook receiver. One alarm at a
time: a CH4 stimulus on a node, wait for the institution to be told, clear the
stimulus, wait for the resolution, next node after a random pause of 0-3 s. The figure includes Alertmanager's
group_wait (--group-wait, 1s by default; a city would choose its own), which dominates.

    .venv/bin/python bench/alarm_dispatch.py [--alarms 30] [--nodes 3] [--group-wait 1s]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from _edge_common import DISTRICT, ZONE, Workspace

from hil.node_handles import apply_stimulus
from hil.sim import SimNode, node_config
from hil.sim_build import build_bundle, default_bundle_dir
from hil.webhook import WebhookReceiver
from tests.support.dispatch import alertmanager_for, dispatch_edge_config, responsibility
from tests.support.edge_process import EdgeProcess


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))]


def line(name: str, values: list[float]) -> str:
    return (
        f"{name:34s} p50 {statistics.median(values):7.0f} ms   p99 {pct(values, 99):7.0f} ms   "
        f"max {max(values):7.0f} ms   (n={len(values)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alarms", type=int, default=30, help="alarms raised and cleared, one at a time")
    ap.add_argument("--nodes", type=int, default=3, help="manhole nodes taking turns")
    ap.add_argument("--interval", type=float, default=1.0, help="the nodes' sampling interval, s")
    ap.add_argument("--group-wait", default="1s", help="Alertmanager's group_wait")
    ap.add_argument("--group-interval", default="2s", help="Alertmanager's group_interval")
    args = ap.parse_args()
    raised: list[float] = []
    cleared: list[float] = []
    with Workspace() as ws, WebhookReceiver() as webhook:
        notify = {"group_wait": args.group_wait, "group_interval": args.group_interval}
        am, _ = alertmanager_for(ws.dir / "dispatch", responsibility(webhook, notify=notify))
        am.start()
        config = dispatch_edge_config(
            ws.dir / "edge", ws.mosquitto.port, ws.influx, am, "edge-dispatch", False
        )
        edge = EdgeProcess(config).start()
        bundle = build_bundle(default_bundle_dir())
        nodes = []
        pace = random.Random(1)
        try:
            for i in range(args.nodes):
                cfg = node_config(
                    f"m-{i:04d}", "manhole", DISTRICT, ZONE, "127.0.0.1", ws.mosquitto.port,
                    args.interval, schedule="always-on", seed=i + 1,
                )  # fmt: skip
                nodes.append(SimNode(ws.dir / "nodes" / cfg["node"], cfg, bundle=bundle).start())
            time.sleep(3 * args.interval)  # every node online and sampling
            for n in range(args.alarms):
                node = nodes[n % len(nodes)]
                nid = node.config["node"]
                # Alarms come at any moment, not in step with Alertmanager's group timers.
                time.sleep(pace.uniform(0, 3))
                t0 = time.monotonic()
                apply_stimulus(node, {"ch4_lel": 30.0})
                told = webhook.wait_alert("xuhui-water", "firing", t0, 60, node=nid, event="ch4")
                if told is None:
                    raise SystemExit(f"alarm {n} on {nid}: no notification within 60 s")
                raised.append((told.received - t0) * 1000)
                t1 = time.monotonic()
                apply_stimulus(node, {"ch4_lel": None})
                done = webhook.wait_alert("xuhui-water", "resolved", t1, 60, node=nid, event="ch4")
                if done is None:
                    raise SystemExit(f"alarm {n} on {nid}: no resolution within 60 s")
                cleared.append((done.received - t1) * 1000)
        finally:
            for node in nodes:
                node.stop()
            edge.stop()
            am.stop()
    print(f"alarms                             {len(raised)} (CH4 on {args.nodes} always-on manhole nodes, "
          f"sampling every {args.interval:g} s), one at a time")  # fmt: skip
    print(
        f"Alertmanager                       group_wait {args.group_wait}, group_interval {args.group_interval}"
    )
    print(line("stimulus -> institution told", raised))
    print(line("stimulus cleared -> resolution", cleared))


if __name__ == "__main__":
    main()
