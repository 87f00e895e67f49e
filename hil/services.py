"""Private instances of the real servers the system talks to, each on a free loopback
port with its state in a folder of its own.

Tests, benchmarks, the demo and the HIL runner all start their servers through these
classes, so a server is configured one way everywhere. Each server can be stopped,
killed (SIGKILL, for fault tests) and started again on the same port with the same state.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A server could not be started or did not become ready."""


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
        self.port = port or free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- to be provided by each server
    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files before the first start."""

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
        if self.running():
            return self
        if self._port_taken():
            raise ServiceError(f"{self.name}: port {self.port} is already in use")
        if self.starts == 0:
            self.prepare()
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
                raise ServiceError(
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
        with urllib.request.urlopen(self.url + "/query", data=data, timeout=30) as resp:
            body = json.load(resp)
        result = body["results"][0]
        if "error" in result:
            raise ServiceError(f"InfluxQL error: {result['error']}")
        return result.get("series", [])

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

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
