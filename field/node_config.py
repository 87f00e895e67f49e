"""A node's config.json (firmware/README.md, contract 1), validated on the laptop before
anything is written to a board, and shown with its secrets masked."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocols.catalog import KINDS
from protocols.names import SLUG_PATTERN
from protocols.thresholds import DEFAULT_INTERVAL_S, THRESHOLDS

Slug = Field(pattern=SLUG_PATTERN)
SECRET_KEYS = ("password",)
MASK = "********"


class ConfigError(Exception):
    """A node config that cannot be used (one line naming the key)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WifiConfig(_Strict):
    ssid: str = Field(min_length=1, max_length=32)
    password: str = Field(default="", max_length=64)


# Where provisioning puts the broker's CA on the board. In the node config a technician
# gives, broker.ca is the CA's PEM file on the laptop; the board gets it in DER form (what
# MicroPython's ssl, mbedTLS, loads) and the config.json written to it names this path.
CA_ON_DEVICE = "certs/ca.der"


class BrokerConfig(_Strict):
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca: str | None = None

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)


class NodeConfig(_Strict):
    node: str = Slug
    district: str = Slug
    zone: str = Slug
    kind: Literal[KINDS]  # type: ignore[valid-type]
    platform: Literal["esp32", "rp2", "sim"]
    schedule: Literal["always-on", "duty-cycled"] = "always-on"
    interval_s: float | None = Field(default=None, le=86400)
    wifi: WifiConfig | None = None
    broker: BrokerConfig
    thresholds: dict[str, float] = Field(default_factory=dict)
    calibration: dict[str, Any] = Field(default_factory=dict)
    queue_max: int = Field(default=500, ge=10, le=5000)
    hil: bool = False
    keepalive_s: int | None = Field(default=None, ge=10, le=120)
    sensor: Literal["mag", "distance"] | None = None
    seed: int | None = None

    @model_validator(mode="after")
    def _platform_rules(self) -> NodeConfig:
        if self.platform in ("esp32", "rp2") and self.wifi is None:
            raise ValueError("wifi: required on esp32 and rp2 (ssid and password)")
        if self.interval_s is not None:
            low = 0.1 if self.platform == "sim" else 5
            if self.interval_s < low:
                raise ValueError(f"interval_s: at least {low:g} on {self.platform}")
        if self.broker.tls and not self.broker.ca:
            # Without the site CA the node would take any certificate: a rogue listener on
            # the street's Wi-Fi would receive its password (the firmware refuses it too).
            raise ValueError("broker.ca: required with tls: the site CA's PEM file (urbansense creds ca)")
        # The node refuses a threshold its kind does not have (firmware node/config.py): say
        # so here, before the copy, not after it.
        known = THRESHOLDS[self.kind]
        for name in self.thresholds:
            if name not in known:
                raise ValueError(
                    f"thresholds.{name}: no such threshold for {self.kind} (its thresholds: "
                    f"{', '.join(sorted(known))})"
                )
        return self

    @property
    def wake_interval_s(self) -> float:
        """How often the node runs: its interval, or its kind's default (as the firmware does)."""
        return self.interval_s if self.interval_s is not None else DEFAULT_INTERVAL_S[self.kind]

    def ca_der(self) -> bytes | None:
        """The CA to copy onto the board, in DER form (None without one)."""
        if not self.broker.ca:
            return None
        try:
            pem = Path(self.broker.ca).read_text()
            return ssl.PEM_cert_to_DER_cert(pem)
        except OSError as err:
            raise ConfigError(
                f"broker.ca: {self.broker.ca}: {err.strerror} (give the CA's PEM "
                f"file on this laptop; it is copied to the board as {CA_ON_DEVICE})"
            ) from None
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"broker.ca: {self.broker.ca} is not a PEM certificate") from None

    @property
    def status_topic(self) -> str:
        return f"city/v1/{self.district}/{self.zone}/{self.node}/status"

    def device_json(self) -> bytes:
        """config.json as the node reads it (optional keys left out when unset)."""
        data = self.model_dump(exclude_none=True)
        data["broker"] = self.broker.model_dump()  # the firmware expects every broker key
        if self.broker.ca:
            data["broker"]["ca"] = CA_ON_DEVICE
        return (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode()


def masked(data: Any) -> Any:
    """A copy of a config (dict) with every secret replaced by a mask."""
    if isinstance(data, dict):
        return {k: (MASK if k in SECRET_KEYS and v else masked(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [masked(v) for v in data]
    return data


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def parse(data: dict, source: str) -> NodeConfig:
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_describe(err)}") from None


def load(path: Path) -> dict:
    """The raw JSON object of a config file (validated later, after overrides)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as err:
        raise ConfigError(f"{path}: {err.strerror}") from None
    except ValueError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a JSON object")
    return data


def set_dotted(data: dict, key: str, value: Any) -> None:
    """data["broker"]["port"] = value for key "broker.port"."""
    *parents, last = key.split(".")
    for part in parents:
        node = data.get(part)
        if not isinstance(node, dict):
            node = data[part] = {}
        data = node
    data[last] = value


def parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"--broker {text}: expected HOST:PORT, e.g. 10.0.0.5:1883")
    return host, int(port)
