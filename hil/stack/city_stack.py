"""The server side of a small city on one machine: a private Mosquitto, a private
InfluxDB 1.6, one edge aggregator per zone and an observer on the broker. The demo and the
HIL runner both stand on it.

Everything is started under one ExitStack, so whatever was started is stopped again, in
reverse order, on success, on error and on Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hil.services import InfluxDBServer, MosquittoServer, NatsCluster, ServiceError
from hil.stack.edges import EdgeProcess, EdgeSite, metric_sum
from hil.stack.observer import CityObserver

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within this block SIGTERM (a CI timeout, `kill`) takes Ctrl-C's way out, so the
    try/finally blocks stop every process that was started."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class CityStack:
    def __init__(
        self,
        workdir: Path,
        sites: list[EdgeSite],
        progress: Progress = _quiet,
        board_host: str | None = None,
        edge_extra: Callable[[EdgeSite], str] | None = None,
        broker: str = "mosquitto",
    ) -> None:
        self.workdir = Path(workdir)
        self.edge_extra = edge_extra  # more TOML for each site's edge config
        self.sites = sites
        self.progress = progress
        # "nats": a 3-member NATS cluster (JetStream + MQTT gateway) in place of Mosquitto,
        # the district tier; edges and nodes list its members.
        self.broker_kind = broker
        self.broker: MosquittoServer | NatsCluster
        if broker == "nats":
            if board_host:
                raise ServiceError("real boards are served by Mosquitto only (no --broker nats with boards)")
            self.broker = NatsCluster(self.workdir / "nats")
        else:
            self.broker = MosquittoServer(self.workdir / "mosquitto")
        # Real boards reach the broker over their Wi-Fi, not over this machine's loopback:
        # the broker then also listens on the address they use, on the same port.
        self.board_host = board_host
        if board_host and isinstance(self.broker, MosquittoServer):
            self.broker.extra_config = f"listener {self.broker.port} {board_host}"
        self.influx = InfluxDBServer(self.workdir / "influxdb")
        self.edges: dict[EdgeSite, EdgeProcess] = {}
        self.observer: CityObserver | None = None
        self._cleanup = contextlib.ExitStack()

    @property
    def broker_address(self) -> tuple[str, int]:
        return (self.broker.host, self.broker.port)

    @property
    def broker_servers(self) -> list[str] | None:
        """Every member of a clustered tier ("host:port"), None for one Mosquitto."""
        return self.broker.addresses if isinstance(self.broker, NatsCluster) else None

    @property
    def broker_name(self) -> str:
        return "NATS" if self.broker_kind == "nats" else "Mosquitto"

    @property
    def board_broker_address(self) -> tuple[str, int]:
        """Where boards connect: the board-facing listener if there is one."""
        return (self.board_host or self.broker.host, self.broker.port)

    def databases(self) -> list[str]:
        return sorted({f"district_{s.district}" for s in self.sites}) + ["city"]

    def start(self) -> CityStack:
        try:
            where = ", ".join(self.broker_servers or [f"{self.broker.host}:{self.broker.port}"])
            self.progress(f"starting {self.broker_name} on {where}")
            self.broker.start()
            self._cleanup.callback(self.broker.stop)
            self.progress(f"starting InfluxDB on {self.influx.url}")
            self.influx.start()
            self._cleanup.callback(self.influx.stop)
            # The edges write into these; creating them first means the first write of a
            # fresh city cannot fail on a missing database.
            for db in self.databases():
                self.influx.create_database(db)
            self.observer = CityObserver(*self.broker_address).start()
            self._cleanup.callback(self.observer.stop)
            for site in self.sites:
                extra = self.edge_extra(site) if self.edge_extra else ""
                edge = EdgeProcess(
                    site,
                    self.workdir / site.name,
                    self.broker_address,
                    self.influx.url,
                    extra,
                    self.broker_servers,
                )
                self.progress(f"starting {site.name} (metrics on {edge.metrics_url})")
                self._cleanup.callback(edge.stop)
                try:
                    edge.start()
                except ServiceError:
                    # One line for the user: the edge's own last words name the problem.
                    last = edge.log_tail(1).strip() or "no output"
                    raise ServiceError(f"{site.name} did not start: {last}") from None
                self.edges[site] = edge
        except BaseException:
            self.stop()
            raise
        return self

    def defer(self, stop: Callable[[], None]) -> None:
        """Stop this too when the stack stops (before the servers it needs)."""
        self._cleanup.callback(stop)

    def stop(self) -> None:
        self._cleanup.close()

    def __enter__(self) -> CityStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_edges_quiet(self, timeout: float, quiet_s: float = 1.0) -> bool:
        """Wait until every sink of every edge has caught up and no message has reached an
        edge for `quiet_s`: then InfluxDB holds all it will hold. False on timeout."""
        deadline = time.monotonic() + timeout
        quiet_since, last = time.monotonic(), None
        while time.monotonic() < deadline:
            samples = [e.metrics() for e in self.edges.values()]
            pending = [metric_sum(m, "sink_pending_lines") for m in samples]
            arrived = sum(metric_sum(m, "messages_in") or 0 for m in samples)
            if arrived != last or not all(p == 0 for p in pending):
                quiet_since, last = time.monotonic(), arrived
            elif time.monotonic() - quiet_since >= quiet_s:
                return True
            time.sleep(0.2)
        return False

    def log_tails(self, lines: int = 30) -> dict[str, str]:
        tails = {self.broker_kind: self.broker.log_tail(lines), "influxdb": self.influx.log_tail(lines)}
        for site, edge in self.edges.items():
            tails[site.name] = edge.log_tail(lines)
        return tails
