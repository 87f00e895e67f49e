# The node's configuration: config.json as provisioning wrote it, with the changes received
# over `cmd` (state/config.json) merged over it. Validated before anything runs; a bad
# config names its key (firmware/README.md, contract 1).
import json
import sys

import files
from node import drop
from protocols import thresholds
from protocols.topics import is_slug

CONFIG_FILE = "config.json"
OVERRIDES_FILE = "state/config.json"
KINDS = ("parking", "air", "leak", "manhole")
PLATFORMS = ("esp32", "rp2", "sim")
SCHEDULES = ("always-on", "duty-cycled")
# Keys a `set` command may change; they persist in OVERRIDES_FILE.
SETTABLE = ("interval_s", "thresholds")


class ConfigError(ValueError):
    def __init__(self, key, why):
        super().__init__("%s: %s" % (key, why))
        self.key = key


def _number(value, key, low, high):
    if type(value) not in (int, float) or not low <= value <= high:
        raise ConfigError(key, "must be a number in %s..%s" % (low, high))
    return value


def _slug(cfg, key):
    if not is_slug(cfg.get(key)):
        raise ConfigError(key, "must be a slug [a-z0-9-]{1,32}, got %r" % (cfg.get(key),))


def _choice(cfg, key, choices, default=None):
    value = cfg.get(key, default)
    if value not in choices:
        raise ConfigError(key, "must be one of %s, got %r" % ("|".join(choices), value))
    cfg[key] = value


def _optional_text(section, key, where):
    value = section.get(key)
    if value is not None and type(value) is not str:
        raise ConfigError(where + "." + key, "must be text or null")
    section[key] = value


def validate(cfg):
    """Check every key and fill the defaults. Returns cfg; raises ConfigError."""
    if type(cfg) is not dict:
        raise ConfigError("config", "must be a JSON object")
    for key in ("node", "district", "zone"):
        _slug(cfg, key)
    _choice(cfg, "kind", KINDS)
    _choice(cfg, "platform", PLATFORMS)
    _choice(cfg, "schedule", SCHEDULES, "always-on")
    sim = cfg["platform"] == "sim"
    kind = cfg["kind"]
    # The sim runs faster than real time so that tests see many cycles.
    low = 0.1 if sim else thresholds.INTERVAL_MIN_S
    cfg["interval_s"] = _number(cfg.get("interval_s", thresholds.DEFAULT_INTERVAL_S[kind]),
                                "interval_s", low, thresholds.INTERVAL_MAX_S)
    wifi = cfg.get("wifi")
    if not sim:
        if type(wifi) is not dict or type(wifi.get("ssid")) is not str or not wifi["ssid"]:
            raise ConfigError("wifi.ssid", "is required on %s" % cfg["platform"])
        _optional_text(wifi, "password", "wifi")
    broker = cfg.get("broker")
    if type(broker) is not dict:
        raise ConfigError("broker", "must be an object with host and port")
    servers = broker.get("servers")
    if servers is not None:
        # A clustered tier's members (NATS), which the client fails over between: kept
        # as broker["members"], [(host, port), ...]; host and port are the first's.
        members = []
        try:
            for s in servers:
                i = s.rindex(":")
                port = int(s[i + 1:])
                if i < 1 or not 0 < port < 65536:
                    raise ValueError
                members.append((s[:i], port))
            broker["host"], broker["port"] = members[0]
        except (TypeError, ValueError, AttributeError, IndexError):
            raise ConfigError("broker.servers", 'must be a list of "host:port"')
        broker["members"] = members
    if type(broker.get("host")) is not str or not broker["host"]:
        raise ConfigError("broker.host", "is required")
    broker["tls"] = broker.get("tls", False)
    if type(broker["tls"]) is not bool:
        raise ConfigError("broker.tls", "must be true or false")
    broker["port"] = _number(broker.get("port", 8883 if broker["tls"] else 1883),
                             "broker.port", 1, 65535)
    for key in ("username", "password", "ca"):
        _optional_text(broker, key, "broker")
    if broker["tls"] and not broker.get("ca"):
        # Without the site CA the node would take any certificate: a rogue listener on the
        # street's Wi-Fi would receive its password.
        raise ConfigError("broker.ca", "is required with tls (the site CA)")
    limits = cfg.get("thresholds", {})
    if type(limits) is not dict:
        raise ConfigError("thresholds", "must be an object")
    known = thresholds.THRESHOLDS[kind]
    for name in limits:
        if name not in known:
            raise ConfigError("thresholds." + name, "no such threshold for %s" % kind)
        _number(limits[name], "thresholds." + name, -1e9, 1e9)
    merged = dict(known)
    merged.update(limits)
    cfg["thresholds"] = merged
    if type(cfg.get("calibration", {})) is not dict:
        raise ConfigError("calibration", "must be an object")
    cfg["calibration"] = cfg.get("calibration", {})
    cfg["queue_max"] = int(_number(cfg.get("queue_max", 500), "queue_max", 10, 5000))
    cfg["keepalive_s"] = int(_number(cfg.get("keepalive_s", 60), "keepalive_s", 10, 120))
    cfg["hil"] = cfg.get("hil", False)
    if type(cfg["hil"]) is not bool:
        raise ConfigError("hil", "must be true or false")
    # Sim only: false makes its "NTP" never answer (a node that takes its time from the
    # edge's receipts). Not filled in: a key more in cfg, which stays, costs heap.
    if type(cfg.get("ntp", True)) is not bool:
        raise ConfigError("ntp", "must be true or false")
    if kind == "parking":
        _choice(cfg, "sensor", ("mag", "distance"), "mag")
    return cfg


def load():
    """config.json merged with the persisted `set` changes, validated."""
    try:
        cfg = files.read_json(CONFIG_FILE)
    except OSError:
        raise ConfigError(CONFIG_FILE, "missing")
    except ValueError:
        raise ConfigError(CONFIG_FILE, "is not valid JSON")
    if type(cfg) is not dict:
        raise ConfigError("config", "must be a JSON object")
    overrides = files.read_json(OVERRIDES_FILE, {})
    if "interval_s" in overrides:
        cfg["interval_s"] = overrides["interval_s"]
    if overrides.get("thresholds"):
        limits = dict(cfg.get("thresholds") or {})
        limits.update(overrides["thresholds"])
        cfg["thresholds"] = limits
    return validate(cfg)


def checked():
    """The config at boot: on a bad one, one line naming the key, and the node stops
    (nothing runs with a config we do not trust). The validator (and what it imports) is
    dropped: it is not needed again until a `set` command."""
    try:
        cfg = load()
    except ConfigError as err:
        print("config error: %s" % err)
        sys.exit(2)
    drop("commands", "protocols")
    return cfg


def persist(cfg, changes):
    """Apply `set` changes to cfg and keep them in flash. Validates first: a change that
    would make the config invalid raises ConfigError and changes nothing."""
    trial = json.loads(json.dumps(cfg))
    if "interval_s" in changes:
        trial["interval_s"] = changes["interval_s"]
    if "thresholds" in changes:
        trial["thresholds"].update(changes["thresholds"])
    validate(trial)
    saved = files.read_json(OVERRIDES_FILE, {})
    if "interval_s" in changes:
        saved["interval_s"] = changes["interval_s"]
    if "thresholds" in changes:
        limits = saved.get("thresholds", {})
        limits.update(changes["thresholds"])
        saved["thresholds"] = limits
    files.write_json(OVERRIDES_FILE, saved)
    cfg["interval_s"] = trial["interval_s"]
    cfg["thresholds"] = trial["thresholds"]
