"""The edge's configuration: one TOML file, validated completely before anything starts.

Every section is a pydantic model with `extra="forbid"`, so a misspelt key is an error
that names it (`mqtt.hots: unknown key, did you mean host?`) rather than a silently
ignored line, and `strict=True`: TOML has types, so `port = "1883"` or `keepalive_s =
true` is a type error, not a value converted behind the operator's back. Relative paths
are taken from the config file's folder, so a generated config is self-sufficient
wherever the process starts. A secret left at a placeholder (`REPLACE-ME`) and a buffer
under /proc, /sys or /dev are refused; `buffer_folder_problem` says whether the buffer's
folder can be written (check-config and `edge run` both ask it).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from protocols import topics
from protocols.names import SLUG_PATTERN

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


# Values the shipped examples hold where a secret goes.
PLACEHOLDERS = ("REPLACE-ME", "CHANGE-ME", "CHANGEME", "...", "<secret>", "xxx")


def _no_placeholder(value: str | None) -> str | None:
    # Only the exact placeholders: anything else may be a real secret, never echoed.
    if value is not None and value.strip().upper() in {p.upper() for p in PLACEHOLDERS}:
        raise ValueError(f"is a placeholder ({value}): put the real secret here, or remove the key")
    return value


Secret = Annotated[str | None, AfterValidator(_no_placeholder)]
# Keys that hold secrets: their values are never shown in an error.
SECRET_KEYS = {"password", "token"}

# Not disks: a buffer there is lost or refused by the kernel.
NOT_DISKS = (Path("/proc"), Path("/sys"), Path("/dev"))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SiteConfig(Section):
    district: Slug
    zone: Slug


# Characters a client id may not hold: NATS' MQTT gateway refuses `.`, `*`, `>` and white
# space (its session names are subjects), Mosquitto takes any UTF-8. The events session adds
# "-events", so the id stays 7 characters under the 128 both accept here.
CLIENT_ID_REFUSED = re.compile(r"[.*>\s]")


def parse_server(value: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port"; ValueError naming what is wrong."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 10.20.0.11:1883)")
    return host, int(port)


class MqttConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    # The members of a clustered broker tier (NATS), "host:port" each: the edge connects to
    # one and fails over to the next when it is lost. Its session lives in the cluster, so
    # any member serves it. In place of host/port, which stay for one broker.
    servers: list[str] | None = None
    # What the tier is: Mosquitto (one broker, the default) or a NATS cluster, whose MQTT
    # gateway delivers nothing to $share subscriptions (see shared_group).
    broker: Literal["mosquitto", "nats"] = "mosquitto"
    # Fixed and unique per worker: the broker keeps this client's persistent session
    # (subscriptions and unacknowledged QoS1 messages) under it across restarts.
    client_id: str = Field(min_length=1, max_length=121)
    username: str | None = None
    # Secrets: repr=False keeps them out of any repr of the config (logs, tracebacks).
    password: Secret = Field(None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    # Subscription filters; default: the four node channels of [site].
    topics: list[str] | None = None
    # When set, subscribe as $share/<group>/<filter> so several workers split one zone.
    shared_group: Name | None = None
    keepalive_s: int = Field(30, ge=5, le=600)
    # Where the main session (telemetry, status, acks) is received: in a thread of the
    # edge, or in a process of its own (edge.receiver), so receiving and committing use
    # two cores. The events session stays in the edge either way (it is small, and it
    # publishes the alarms).
    receiver: Literal["thread", "process"] = "thread"

    @field_validator("topics")
    @classmethod
    def _topics_not_empty(cls, value):
        if value is not None and not value:
            raise ValueError("topics must not be empty (leave the key out for the default)")
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        if CLIENT_ID_REFUSED.search(value):
            raise ValueError("must not contain '.', '*', '>' or white space (a NATS broker refuses them)")
        return value

    @field_validator("servers")
    @classmethod
    def _servers(cls, value):
        if value is None:
            return value
        if not value:
            raise ValueError("servers must not be empty (leave the key out and give host/port)")
        for server in value:
            parse_server(server)
        dupes = sorted({s for s in value if value.count(s) > 1})
        if dupes:
            raise ValueError(f"servers listed twice: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _tier(self):
        if self.servers is not None and {"host", "port"} & self.model_fields_set:
            raise ValueError("servers: give either `servers` or `host`/`port`, not both")
        if self.servers and len(self.servers) > 1 and self.broker == "mosquitto":
            # Each Mosquitto keeps its sessions to itself: failing over to another would
            # leave this edge's queued messages behind on the first.
            raise ValueError('servers: several members are a cluster, set broker = "nats"')
        if self.shared_group and self.broker == "nats":
            raise ValueError(
                "shared_group: a NATS tier accepts $share subscriptions and delivers nothing "
                "to them; split the zone between workers with `topics` filters instead"
            )
        return self

    @model_validator(mode="after")
    def _receiver(self):
        if self.receiver == "process" and self.topics and not any(t.endswith("/event") for t in self.topics):
            # Events and the alarms they raise stay in the edge, in a session of their own.
            raise ValueError(
                'receiver: "process" needs the event channel in filters of its own '
                "(topics ending in /event), which the edge keeps to publish the alarms"
            )
        return self

    @property
    def members(self) -> list[tuple[str, int]]:
        """(host, port) of every broker to try, in order."""
        if self.servers:
            return [parse_server(s) for s in self.servers]
        return [(self.host, self.port)]


class BufferConfig(Section):
    path: str = "state/buffer.db"
    # Cap on what the buffer takes on disk (database file + write-ahead log). Over it,
    # free pages go back and the WAL is truncated, then the oldest telemetry goes;
    # events are never dropped.
    max_bytes: int = Field(2_000_000_000, ge=256 * 1024)
    # Room kept beside the database (a file of its own) and given back when the disk is
    # full, so forwarding can still store its progress and delete what it forwarded.
    reserve_bytes: int = Field(4 * 1024 * 1024, ge=0, le=1024**3)
    # "full": fsync the WAL at every commit, so an acknowledged message survives power loss
    # (the broker forgets a message once acked). "normal" survives a process crash only.
    synchronous: Literal["full", "normal"] = "full"
    # Group commit: one transaction (one fsync) for up to this many messages ... (Much of
    # a commit's work is per node of the group, not per message: in two of three paired
    # backlog drains, groups of up to 1,000 took 12-21 % less CPU per message than groups
    # of up to 500, and drained 22-27 % faster; docs/PERFORMANCE.md.)
    commit_max_messages: int = Field(1000, ge=1, le=100_000)
    # ... or whatever arrived within this many ms after the first one.
    commit_wait_ms: float = Field(0.0, ge=0, le=1000)
    # How long the (node, boot, seq) identity index remembers a reading.
    dedup_hours: float = Field(48.0, gt=0)
    # Dead-letter rows kept (oldest removed beyond this).
    dead_letter_max_rows: int = Field(100_000, ge=100)


class SinkConfig(Section):
    name: Name
    url: str
    api: Literal["v1", "v2"] = "v1"
    database: str | None = None  # v1
    username: str | None = None  # v1, optional
    password: Secret = Field(None, repr=False)  # v1, optional (a secret)
    bucket: str | None = None  # v2
    org: str | None = None  # v2
    token: Secret = Field(None, repr=False)  # v2 (a secret)
    data: Literal["raw", "rollup"] = "raw"
    # Largest batch of line-protocol lines in one request.
    batch_max_lines: int = Field(5000, ge=1, le=1_000_000)
    # Telemetry waits at most this long for a fuller batch; events never wait.
    batch_wait_ms: float = Field(100.0, ge=0, le=60_000)
    timeout_s: float = Field(10.0, gt=0, le=300)
    gzip: bool = True
    # Exponential backoff with full jitter between these bounds.
    retry_min_s: float = Field(0.2, gt=0)
    retry_max_s: float = Field(30.0, gt=0)
    create_database: bool = True  # v1: CREATE DATABASE at start and on "database not found"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not (value.startswith("http://") or value.startswith("https://")):
            raise ValueError("url must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _api_keys(self):
        if self.api == "v1" and not self.database:
            raise ValueError("a v1 sink needs `database`")
        if self.api == "v2" and not (self.bucket and self.org):
            raise ValueError("a v2 sink needs `bucket` and `org` (and usually `token`)")
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must be at least retry_min_s")
        return self


class MetricsConfig(Section):
    # host:port for the Prometheus text endpoint; "" turns it off.
    listen: str = "127.0.0.1:9108"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value == "":
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("listen must be host:port, e.g. 127.0.0.1:9108")
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class RollupConfig(Section):
    # A minute is rolled up this many seconds after it ends (late readings rewrite it).
    delay_s: float = Field(5.0, ge=0, le=3600)
    # Rollup state is kept this long, so a late reading within it rewrites a full minute.
    keep_hours: float = Field(24.0, gt=0)


class HealthConfig(Section):
    # A node silent for more than this many reporting intervals is offline.
    offline_after_intervals: float = Field(3.0, gt=0)
    # Health points at most this often per node, unless online/offline changes.
    write_every_s: float = Field(60.0, ge=0)
    check_every_s: float = Field(5.0, gt=0)


class AlarmsConfig(Section):
    enabled: bool = True


class AlertmanagerConfig(Section):
    """Where the edge posts its alarms as alerts (edge/alertmanager.py); off without `url`."""

    # Alertmanager's base URL (its v2 API is under /api/v2); "" turns delivery off.
    url: str = ""
    # Events of these severities become alerts; `info` (parking occupancy) is no alarm.
    severities: list[Literal["info", "warning", "critical"]] = ["warning", "critical"]
    # Open alarms are posted again this often: Alertmanager keeps alerts in memory only,
    # and forgets one that is not posted again before its endsAt.
    repost_s: float = Field(30.0, ge=1, le=3600)
    # endsAt of an open alarm = now + this: if the edge is gone for longer, Alertmanager
    # takes the alarm for resolved. Several repost periods, so a late repost is harmless.
    hold_s: float = Field(600.0, ge=10, le=86400)
    # A cleared alarm stays firing in Alertmanager at least this long, so that it is told
    # before its resolution (more than the routes' group_wait).
    min_firing_s: float = Field(30.0, ge=0, le=3600)
    timeout_s: float = Field(5.0, gt=0, le=120)
    retry_min_s: float = Field(0.2, gt=0)
    retry_max_s: float = Field(30.0, gt=0)
    # The edge's own record of open alarms (survives restarts); next to the buffer.
    state: str = "state/alertmanager.db"
    # generatorURL of each alert, with {district} {zone} {node} {kind} {event} filled in
    # (a dashboard of the node, say); "" leaves it out.
    link: str = ""
    # Human place names by node id ("Caohejing Rd 12, by the bus stop"), as annotation `place`.
    places: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not (value.startswith("http://") or value.startswith("https://")):
            raise ValueError("url must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _retry(self):
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must be at least retry_min_s")
        if self.hold_s < 2 * self.repost_s:
            raise ValueError("hold_s must be at least twice repost_s")
        if not self.severities:
            raise ValueError("severities must not be empty (leave `url` out to turn delivery off)")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class LimitsConfig(Section):
    # Sustained messages/s one node may send on telemetry, status and ack (one bucket per
    # node id): a number, "auto" (rate_factor over the node's reporting interval, as it
    # last reported it or its kind's default), or 0 for no limit.
    node_rate: float | Literal["auto"] = 0
    rate_factor: float = Field(5.0, gt=1)
    # Messages a node may send at once above its rate (a reconnecting node's backlog).
    node_burst: int = Field(30, ge=1)
    # Events have a bucket of their own (0: no limit), so a node flooding telemetry still
    # gets its alarms through, and a node flooding events is throttled by itself.
    event_rate: float = Field(0, ge=0)
    event_burst: int = Field(20, ge=1)

    @field_validator("node_rate", mode="before")
    @classmethod
    def _node_rate(cls, value):
        # One clear line instead of one error per member of the union.
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError('node_rate must be messages/s (0: no limit) or "auto"')
        return float(value)


class ReceiptsConfig(Section):
    # Publish receipts to the nodes after the commits (protocols/SPEC.md 7.1). Nodes
    # keep their readings until a receipt covers them: turn it off only to measure.
    enabled: bool = True
    # While messages keep coming, a node owed a receipt gets one at most this often (its
    # newest ranges); once the edge is idle, at once. Well under a node's resend delay
    # (2 reporting intervals, 10 s at the shortest).
    window_ms: float = Field(500.0, ge=0, le=1000)


class ClockConfig(Section):
    # A node whose clock offset estimate is beyond this is flagged (clock_bad).
    max_offset_s: float = Field(120.0, gt=0, le=86400 * 365)


class EdgeConfig(Section):
    site: SiteConfig
    mqtt: MqttConfig
    buffer: BufferConfig = BufferConfig()
    sink: list[SinkConfig] = Field(min_length=1)
    metrics: MetricsConfig = MetricsConfig()
    rollup: RollupConfig = RollupConfig()
    health: HealthConfig = HealthConfig()
    alarms: AlarmsConfig = AlarmsConfig()
    limits: LimitsConfig = LimitsConfig()
    receipts: ReceiptsConfig = ReceiptsConfig()
    clock: ClockConfig = ClockConfig()
    alertmanager: AlertmanagerConfig = AlertmanagerConfig()
    # Folder of the config file: relative paths are resolved against it.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _unique_sinks(self):
        names = [s.name for s in self.sink]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sink names must be unique: {', '.join(dupes)}")
        if self.alertmanager.enabled and "alertmanager" in names:
            # Its backlog metrics are labelled sink="alertmanager".
            raise ValueError("sink name `alertmanager` is taken by [alertmanager] delivery")
        return self

    @model_validator(mode="after")
    def _buffer_on_a_disk(self):
        where = self.buffer_path.resolve()
        for root in NOT_DISKS:
            if where.is_relative_to(root):
                raise ValueError(
                    f"buffer.path: {where} is under {root}, which is no disk: put it on the edge's disk"
                )
        return self

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def buffer_path(self) -> Path:
        return self.path(self.buffer.path)

    def subscriptions(self) -> list[str]:
        filters = self.mqtt.topics or topics.zone_filters(self.site.district, self.site.zone)
        if self.mqtt.shared_group:
            filters = [f"$share/{self.mqtt.shared_group}/{f}" for f in filters]
        return filters


def redact_url(url: str) -> str:
    """The URL with its whole user part masked (https://***@host/).

    Everything up to the last "@" is masked: a password may hold "@", ":" or even "/",
    and the user name goes too (it is half a credential). Masking a path that holds an
    "@" costs a line of output; showing part of a password costs the password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    return f"{scheme}{sep}***@{host}" if at else url


class ConfigError(Exception):
    """A config that cannot be used; `problems` lists one line per bad key."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = path
        self.problems = problems


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


# Pydantic's strict type errors, said as what the key must be.
_TYPE_WORDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string (in quotes)",
    "list_type": "a list [...]",
    "dict_type": "a table",
    "model_type": "a table",
}
_TOML_TYPES = {
    bool: "true/false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a table",
}


def _toml(value) -> str:
    """A value as it was written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _section_at(loc: tuple) -> type[BaseModel] | None:
    """The model that holds the key at `loc` (for "did you mean")."""
    model: type[BaseModel] | None = EdgeConfig
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        annotation = info.annotation
        if typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def _unknown_key(loc: tuple) -> str:
    section = _section_at(loc)
    if section is None:
        return "unknown key"
    known = [k for k in section.model_fields if k != "base_dir"]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f"unknown key, did you mean {close[0]}?" if close else f"unknown key (known: {', '.join(known)})"


def problems_of(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = _where(loc)
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: {_unknown_key(loc)}")
        elif e["type"] == "missing":
            lines.append(f"{where}: missing (required)")
        elif e["type"] in _TYPE_WORDS:
            got = _TOML_TYPES.get(type(e["input"]), type(e["input"]).__name__)
            # A secret's value is never repeated, even a mistyped one.
            shown = "" if SECRET_KEYS & {str(p) for p in loc} else f" ({_toml(e['input'])})"
            lines.append(f"{where}: must be {_TYPE_WORDS[e['type']]}, not {got}{shown}")
        elif not loc:
            # A check of the whole file names its key itself.
            lines.append(e["msg"].removeprefix("Value error, "))
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg}")
    return lines


def buffer_folder_problem(cfg: EdgeConfig, missing_ok: bool = False) -> str | None:
    """Why the buffer's folder cannot be written, in one line; None when it can (or can
    be made). A read-only file system says no here even to root. With `missing_ok`
    (check-config), a folder that does not exist yet under one this user cannot write is
    let pass: the service manager may make it at start (systemd's StateDirectory), and
    `edge run` checks again without it."""
    folder = cfg.buffer_path.parent
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"buffer.path: {probe} is not a folder"
    readonly = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    why = "a read-only file system" if readonly else f"{probe} is not writable"
    if probe == folder:
        if readonly or not os.access(folder, os.W_OK | os.X_OK):
            return f"buffer.path: folder {folder} is not writable ({why})"
        return None
    if readonly or not (missing_ok or os.access(probe, os.W_OK | os.X_OK)):
        return f"buffer.path: folder {folder} does not exist and cannot be made ({why})"
    return None


def parse_config(data: dict, base_dir: Path, source: str = "<config>") -> EdgeConfig:
    try:
        return EdgeConfig.model_validate({**data, "base_dir": base_dir})
    except ValidationError as err:
        raise ConfigError(source, problems_of(err)) from None


def load_config(path: str | Path) -> EdgeConfig:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(str(path), [f"cannot read: {err.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(str(path), [f"not valid TOML: {err}"]) from None
    if "base_dir" in data:
        raise ConfigError(str(path), ["base_dir: unknown key"])
    return parse_config(data, path.resolve().parent, str(path))
