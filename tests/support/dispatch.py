"""Alarm dispatch rigs for the tests and the bench: a responsibility file written from a
dict, the Alertmanager configuration generated from it by the real command, a private
Alertmanager, and an edge config whose [alertmanager] section points at it."""

from __future__ import annotations

import json
from pathlib import Path

from hil.services import AlertmanagerServer
from protocols import codec
from tests.support.cli import urbansense
from tests.support.edge_process import toml_value, v1_sink, write_config
from tests.support.readings import now_ms
from tests.support.site import topic


def write_toml(path: Path, data: dict) -> Path:
    """A TOML file of tables (and arrays of tables) of plain values."""
    out: list[str] = []

    def table(name: str, values: dict) -> None:
        plain = {k: v for k, v in values.items() if not isinstance(v, dict)}
        out.append(f"[{name}]")
        out.extend(f"{json.dumps(k) if '-' in k else k} = {_value(v)}" for k, v in plain.items())
        out.append("")
        for k, v in values.items():
            if isinstance(v, dict):
                table(f"{name}.{k}", v)

    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                out.append(f"[[{key}]]")
                out.extend(f"{k} = {_value(v)}" for k, v in item.items())
                out.append("")
        elif isinstance(value, dict):
            table(key, value)
        else:
            out.insert(0, f"{key} = {_value(value)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    return path


def _value(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_value(x)}" for k, x in v.items()) + "}"
    return toml_value(v)


def responsibility(webhook, smtp=None, **overrides) -> dict:
    """A small city's responsibility: xuhui's leak and manhole alarms to xuhui-water
    (webhook), xuhui's duty officer by webhook, the city's duty officer by webhook (and
    email when an SMTP server is given); everything else to city-duty."""
    data: dict = {
        "notify": {"group_wait": "1s", "group_interval": "2s", "repeat_interval": "4h"},
        "institutions": {
            "xuhui-water": {"name": "Xuhui water authority", "webhook": [webhook.url("xuhui-water")]},
            "xuhui-duty": {"name": "Xuhui duty officer", "webhook": [webhook.url("xuhui-duty")]},
            "city-duty": {"name": "City duty officer", "webhook": [webhook.url("city-duty")]},
        },
        "rule": [{"district": "xuhui", "kinds": ["leak", "manhole"], "institution": "xuhui-water"}],
        "default": {"institution": "city-duty"},
        "escalation": {"city": "city-duty", "districts": {"xuhui": "xuhui-duty"}},
    }
    if smtp is not None:
        data["smtp"] = {"smarthost": smtp.smarthost, "from": "alarms@city.example", "require_tls": False}
        data["institutions"]["city-duty"]["email"] = ["duty@city.example"]
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def alertmanager_for(folder: Path, resp: dict) -> tuple[AlertmanagerServer, Path]:
    """An Alertmanager (not started) configured by `urbansense alarms config` from `resp`;
    also returns the responsibility file, whose [alertmanager] url points at it."""
    am = AlertmanagerServer(folder / "alertmanager", config="")
    path = write_toml(folder / "responsibility.toml", {**resp, "alertmanager": {"url": am.url}})
    out = folder / "alertmanager.yml"
    done = urbansense("alarms", "config", str(path), "--out", str(out))
    assert done.returncode == 0, done.stderr
    am.config = out.read_text()
    return am, path


def edge_alertmanager(am: AlertmanagerServer, places: dict[str, str] | None = None, **extra) -> dict:
    """The edge's [alertmanager] section (for write_config's `extra`): quick retries and
    reposts, a short alarm fired for 2 s (the rigs' group_wait is 1 s), and the place
    names of nodes."""
    section = {
        "url": am.url,
        "retry_min_s": 0.1,
        "retry_max_s": 1.0,
        "repost_s": 2,
        "min_firing_s": 2,
        **extra,
    }
    return {"alertmanager": section, "alertmanager.places": places or {}}


def dispatch_edge_config(
    folder: Path,
    mosquitto_port: int,
    influx,
    am: AlertmanagerServer,
    client_id: str,
    metrics: bool = True,
    **am_extra,
) -> Path:
    """An edge config with an InfluxDB sink (database named after the client id) and
    [alertmanager] delivery to `am`."""
    return write_config(
        folder,
        mqtt_port=mosquitto_port,
        client_id=client_id,
        sinks=[v1_sink("district", influx, client_id.replace("-", "_"))],
        metrics=metrics,
        extra=edge_alertmanager(am, **am_extra),
    )


def event(node: str, kind: str, name: str, state: bool, seq: int, value: float | None = None, boot: int = 1):
    """(topic, payload) of an event as a node publishes it."""
    return topic(node, "event"), codec.encode_event(
        node, kind, boot, seq, name, state, value=value, ts=now_ms()
    )
