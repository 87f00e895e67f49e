# The receiver's decoder: turns (topic, payload bytes) from a node into one normalized
# plain dict, or raises ProtocolError with a machine-readable reason (SPEC.md sections
# 3-8). Checks run in the order SPEC.md section 8 fixes, so every implementation reports
# the same reason for the same message.
# Plain Python that runs unchanged under CPython and MicroPython (the golden vectors are
# checked under both), though only receivers need it: nodes import codec.py alone.
from protocols import catalog, thresholds
from protocols.codec import (
    COUNTER_MAX,
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    MAX_MESSAGE_BYTES,
    TS_MIN_MS,
    _number,
    _only,
    _parse,
    _require,
)
from protocols.errors import (
    BAD_BATCH,
    BAD_ID,
    BAD_TIME,
    BAD_TOPIC,
    BAD_TYPE,
    BAD_VERSION,
    EMPTY,
    ID_MISMATCH,
    OUT_OF_RANGE,
    TOO_LARGE,
    UNKNOWN_EVENT,
    UNKNOWN_FIELD,
    UNKNOWN_KIND,
    ProtocolError,
)
from protocols.topics import EDGE_CHANNELS, EVENT, STATUS, TELEMETRY, VERSION, is_slug, parse_topic

MAX_CLOCK_AHEAD_MS = 300000  # a node clock may run 5 min ahead of the receiver
MAX_AGE_MS = 2592000000  # 30 days: the longest a reading may wait in a node's queue
MAX_TEXT = 64  # fw, reset cause
MAX_ERROR_TEXT = 200
STATES = ("online", "offline")

_READING_KEYS = ("v", "node", "kind", "boot", "seq", "ts", "age_ms", "fields")
_BATCH_KEYS = ("v", "node", "kind", "boot", "seq", "batch")
_ITEM_KEYS = ("boot", "seq", "ts", "age_ms", "fields")
_EVENT_KEYS = (
    "v",
    "node",
    "kind",
    "boot",
    "seq",
    "ts",
    "age_ms",
    "event",
    "state",
    "severity",
    "value",
    "fields",
)
_STATUS_KEYS = (
    "v",
    "node",
    "kind",
    "boot",
    "seq",
    "ts",
    "age_ms",
    "state",
    "fw",
    "interval_s",
    "reset",
    "first_seq",
    "dropped",
)
_ACK_KEYS = ("v", "node", "kind", "boot", "seq", "id", "ok", "error", "result")


def _integer(value, key, low, high):
    if type(value) is not int:
        raise ProtocolError(BAD_TYPE, key + " must be an integer")
    if not low <= value <= high:
        raise ProtocolError(OUT_OF_RANGE, "%s=%d outside %d..%d" % (key, value, low, high))
    return value


def _text(value, key, limit):
    if type(value) is not str:
        raise ProtocolError(BAD_TYPE, key + " must be a string")
    if len(value) > limit:
        raise ProtocolError(TOO_LARGE, "%s longer than %d" % (key, limit))
    return value


def _counter(obj, key):
    return _integer(_require(obj, key), key, 0, COUNTER_MAX)


def _time(obj, now_ms, required=True):
    """Return (ts, time_source) per SPEC.md section 5; (None, None) if absent and allowed."""
    has_ts = "ts" in obj
    has_age = "age_ms" in obj
    if has_ts and has_age:
        raise ProtocolError(BAD_TIME, "ts and age_ms are exclusive")
    if has_ts:
        ts = obj["ts"]
        if type(ts) is not int:
            raise ProtocolError(BAD_TYPE, "ts must be an integer (ms since epoch)")
        if ts < TS_MIN_MS:
            raise ProtocolError(BAD_TIME, "ts before 2020: the node clock is not set")
        if now_ms is not None and ts > now_ms + MAX_CLOCK_AHEAD_MS:
            raise ProtocolError(BAD_TIME, "ts more than 5 min in the future")
        return ts, "node"
    if has_age:
        age = obj["age_ms"]
        if type(age) is not int:
            raise ProtocolError(BAD_TYPE, "age_ms must be an integer")
        if not 0 <= age <= MAX_AGE_MS:
            raise ProtocolError(BAD_TIME, "age_ms outside 0..30 days")
        if now_ms is None:
            raise ProtocolError(BAD_TIME, "age_ms needs the receiver's clock")
        return now_ms - age, "edge"
    if required:
        raise ProtocolError(BAD_TIME, "one of ts or age_ms is required")
    return None, None


def check_fields(kind, fields, where="fields"):
    """Validate a fields object against the catalog; return it with numbers as floats."""
    if type(fields) is not dict:
        raise ProtocolError(BAD_TYPE, where + " must be an object")
    if not fields:
        raise ProtocolError(EMPTY, where + " is empty")
    spec = catalog.fields_of(kind)
    out = {}
    for name in fields:
        field = spec.get(name)
        if field is None:
            raise ProtocolError(UNKNOWN_FIELD, "%s has no field %r" % (kind, name))
        value = fields[name]
        if field[0] == catalog.BOOL:
            if type(value) is not bool:
                raise ProtocolError(BAD_TYPE, name + " must be true or false")
            out[name] = value
        else:
            value = _number(value, name)
            if not field[2] <= value <= field[3]:
                raise ProtocolError(OUT_OF_RANGE, "%s=%s outside %s..%s" % (name, value, field[2], field[3]))
            out[name] = value
    return out


def _reading(obj, kind, now_ms):
    boot = _counter(obj, "boot")
    seq = _counter(obj, "seq")
    ts, source = _time(obj, now_ms)
    fields = check_fields(kind, _require(obj, "fields"))
    return {"boot": boot, "seq": seq, "ts": ts, "time_source": source, "fields": fields}


def _telemetry(obj, kind, now_ms, size):
    if "batch" not in obj:
        if size > MAX_MESSAGE_BYTES:
            raise ProtocolError(TOO_LARGE, "one reading is limited to 1 KiB")
        _only(obj, _READING_KEYS)
        return [_reading(obj, kind, now_ms)]
    _only(obj, _BATCH_KEYS)
    items = obj["batch"]
    if type(items) is not list:
        raise ProtocolError(BAD_TYPE, "batch must be an array")
    if not items:
        raise ProtocolError(EMPTY, "batch has no items")
    if len(items) > MAX_BATCH_ITEMS:
        raise ProtocolError(TOO_LARGE, "batch has more than %d items" % MAX_BATCH_ITEMS)
    boot = _counter(obj, "boot")
    seq = _counter(obj, "seq")
    readings = []
    last = None
    for item in items:
        if type(item) is not dict:
            raise ProtocolError(BAD_TYPE, "batch items must be objects")
        _only(item, _ITEM_KEYS, "batch item")
        reading = _reading(item, kind, now_ms)
        key = (reading["boot"], reading["seq"])
        if last is not None and key <= last:
            raise ProtocolError(BAD_BATCH, "items not in increasing (boot, seq) order")
        last = key
        readings.append(reading)
    if (boot, seq) != last:
        raise ProtocolError(BAD_BATCH, "envelope boot/seq must be those of the last item")
    return readings


def _event(obj, kind, now_ms):
    _only(obj, _EVENT_KEYS)
    out = {"boot": _counter(obj, "boot"), "seq": _counter(obj, "seq")}
    out["ts"], out["time_source"] = _time(obj, now_ms)
    name = _require(obj, "event")
    if type(name) is not str:
        raise ProtocolError(BAD_TYPE, "event must be a string")
    known = catalog.EVENTS.get(name)
    if known is None or (known[0] != "*" and kind not in known[0]):
        raise ProtocolError(UNKNOWN_EVENT, "%s nodes raise no event %r" % (kind, name))
    out["event"] = name
    state = _require(obj, "state")
    if type(state) is not bool:
        raise ProtocolError(BAD_TYPE, "state must be true or false")
    out["state"] = state
    severity = obj.get("severity", known[1])
    if type(severity) is not str:
        raise ProtocolError(BAD_TYPE, "severity must be a string")
    if severity not in catalog.SEVERITIES:
        raise ProtocolError(OUT_OF_RANGE, "severity must be info, warning or critical")
    out["severity"] = severity
    value = obj.get("value")
    out["value"] = None if value is None else _number(value, "value")
    out["fields"] = check_fields(kind, obj["fields"]) if "fields" in obj else {}
    return out


def _status(obj, now_ms):
    _only(obj, _STATUS_KEYS)
    out = {"boot": _counter(obj, "boot"), "seq": _counter(obj, "seq")}
    # A last will is composed at connect time and published later by the broker, so a
    # status message may carry no time; the receiver then uses its arrival time.
    out["ts"], out["time_source"] = _time(obj, now_ms, required=False)
    state = _require(obj, "state")
    if type(state) is not str:
        raise ProtocolError(BAD_TYPE, "state must be a string")
    if state not in STATES:
        raise ProtocolError(OUT_OF_RANGE, "state must be online or offline")
    out["state"] = state
    out["fw"] = _text(obj["fw"], "fw", MAX_TEXT) if "fw" in obj else None
    out["reset"] = _text(obj["reset"], "reset", MAX_TEXT) if "reset" in obj else None
    if "interval_s" in obj:
        interval = _number(obj["interval_s"], "interval_s")
        if not thresholds.INTERVAL_MIN_S <= interval <= thresholds.INTERVAL_MAX_S:
            raise ProtocolError(
                OUT_OF_RANGE,
                "interval_s outside %d..%d" % (thresholds.INTERVAL_MIN_S, thresholds.INTERVAL_MAX_S),
            )
        out["interval_s"] = interval
    else:
        out["interval_s"] = None
    # Loss accounting (SPEC.md 6.4): optional, null when absent.
    for key in ("first_seq", "dropped"):
        out[key] = _counter(obj, key) if key in obj else None
    return out


def _ack(obj):
    _only(obj, _ACK_KEYS)
    out = {"boot": _counter(obj, "boot"), "seq": _counter(obj, "seq")}
    cmd_id = _require(obj, "id")
    if not is_slug(cmd_id):
        raise ProtocolError(BAD_ID, "command id must be a slug")
    out["id"] = cmd_id
    ok = _require(obj, "ok")
    if type(ok) is not bool:
        raise ProtocolError(BAD_TYPE, "ok must be true or false")
    out["ok"] = ok
    out["error"] = _text(obj["error"], "error", MAX_ERROR_TEXT) if "error" in obj else None
    result = obj.get("result")
    if result is not None and type(result) is not dict:
        raise ProtocolError(BAD_TYPE, "result must be an object")
    out["result"] = result
    return out


def decode(topic, payload, now_ms=None):
    """Decode a message a node published. Returns a normalized dict:

    common keys: v, channel, district, zone, node, kind
    telemetry:   readings: [{boot, seq, ts, time_source, fields}]
    event:       boot, seq, ts, time_source, event, state, severity, value, fields
    status:      boot, seq, ts (None if absent), time_source, state, fw, interval_s, reset,
                 first_seq, dropped
    cmd/ack:     boot, seq, id, ok, error, result

    `now_ms` is the receiver's clock (ms since the Unix epoch); it turns age_ms into ts
    and bounds how far ahead a node's clock may run."""
    version, district, zone, node, channel = parse_topic(topic)
    if version != VERSION:
        raise ProtocolError(BAD_VERSION, "this decoder speaks v%d" % VERSION)
    if channel in EDGE_CHANNELS:
        raise ProtocolError(BAD_TOPIC, "%s is not a node channel; nodes decode it with codec" % channel)
    size = len(payload)
    if size > MAX_BATCH_BYTES or (channel != TELEMETRY and size > MAX_MESSAGE_BYTES):
        raise ProtocolError(TOO_LARGE, "%d bytes" % size)
    obj = _parse(payload)
    if "v" not in obj:
        raise ProtocolError(BAD_VERSION, "v is missing")
    if type(obj["v"]) is not int or obj["v"] != version:
        raise ProtocolError(BAD_VERSION, "v must be %d, as in the topic" % version)
    payload_node = _require(obj, "node")
    if not is_slug(payload_node):
        raise ProtocolError(BAD_ID, "node must be a slug")
    if payload_node != node:
        raise ProtocolError(ID_MISMATCH, "payload node %r on topic of %r" % (payload_node, node))
    kind = _require(obj, "kind")
    if type(kind) is not str or kind not in catalog.KIND_FIELDS:
        raise ProtocolError(UNKNOWN_KIND, repr(kind))
    out = {"v": version, "channel": channel, "district": district, "zone": zone, "node": node, "kind": kind}
    if channel == TELEMETRY:
        out["readings"] = _telemetry(obj, kind, now_ms, size)
    elif channel == EVENT:
        out.update(_event(obj, kind, now_ms))
    elif channel == STATUS:
        out.update(_status(obj, now_ms))
    else:
        out.update(_ack(obj))
    return out
