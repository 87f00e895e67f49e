"""Edge recovery: a backlog built during a sink outage, then how fast it drains.

The edge runs with InfluxDB stopped while readings arrive at a steady rate (the build
rate); then InfluxDB starts and the clock runs until every reading is in it. Prints both
rates and their ratio (goal: the backlog drains at least 10 times faster than it built).

    .venv/bin/python bench/edge_recovery.py [--rate 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import time

from _edge_common import EdgeProcess, Workspace, metric, payloads, publish, v1_sink, wait_for, write_config


def written(edge) -> float:
    try:
        return metric(edge.metrics_text(), "urbansense_edge_sink_written_lines_total", 'sink="district"') or 0
    except OSError:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="readings per second during the outage")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the outage")
    args = ap.parse_args()
    n = int(args.rate * args.seconds)
    db = "bench_recovery"
    with Workspace() as ws:
        ws.influx.create_database(db)
        config = write_config(
            ws.dir / "edge",
            mqtt_port=ws.mosquitto.port,
            client_id="edge-recovery",
            metrics=True,
            sinks=[v1_sink("district", ws.influx, db, batch_wait_ms=100, retry_min_s=0.2, retry_max_s=1.0)],
        )
        edge = EdgeProcess(config).start()
        ws.influx.stop()
        build_secs = publish(ws.mosquitto.port, payloads(n, prefix="r"), processes=1, rate=args.rate)
        wait_for(
            lambda: (metric(edge.metrics_text(), "urbansense_edge_readings_total") or 0) >= n,
            120,
            0.1,
            "backlog committed",
        )
        backlog = metric(edge.metrics_text(), "urbansense_edge_sink_pending_lines", 'sink="district"')
        ws.influx.start()  # returns once InfluxDB answers /ping
        t0 = time.monotonic()
        wait_for(lambda: written(edge) >= n, 600, 0.02, "backlog drained")
        drain_secs = time.monotonic() - t0
        points = ws.influx.count("air", db, "pm25")
        edge.stop()
    build_rate = n / build_secs
    drain_rate = n / drain_secs
    print(f"backlog                {n} readings ({backlog:.0f} lines pending when InfluxDB came back)")
    print(f"built at               {build_rate:8.0f} readings/s over {build_secs:.1f} s")
    print(
        f"drained at             {drain_rate:8.0f} readings/s in {drain_secs:.2f} s "
        f"(from InfluxDB ready; includes the edge's retry backoff, at most 1 s)"
    )
    print(f"drain / build          {drain_rate / build_rate:8.1f} x")
    print(f"points in InfluxDB     {points}/{n}")


if __name__ == "__main__":
    main()
