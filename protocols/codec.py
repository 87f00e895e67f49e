# Encoders for every protocol v1 message, the decoders of commands and receipts (what a
# node reads), and the small parsing helpers the full decoder (decoder.py) shares.
#
# Nodes import this module and not decoder.py: it holds only what a node needs, because
# every module a node imports costs heap (SPEC.md section 10 gives the budget).
# Plain Python that runs unchanged under CPython and MicroPython: note `type(x) is bool`
# rather than isinstance, because MicroPython's bool is not a subclass of int.
import json

from protocols import thresholds
from protocols.errors import (
    BAD_BATCH,
    BAD_ID,
    BAD_JSON,
    BAD_TIME,
    BAD_TYPE,
    BAD_VERSION,
    EMPTY,
    ID_MISMATCH,
    MISSING_FIELD,
    NOT_OBJECT,
    OUT_OF_RANGE,
    TOO_LARGE,
    UNKNOWN_FIELD,
    ProtocolError,
)
from protocols.topics import VERSION, is_slug

MAX_MESSAGE_BYTES = 1024  # one reading, event, status or ack
MAX_BATCH_BYTES = 8192  # a telemetry batch
MAX_BATCH_ITEMS = 64
MAX_DEPTH = 32  # JSON nesting; a valid message needs 4
MAX_RECEIPT_RANGES = 8
TS_MIN_MS = 1577836800000  # 2020-01-01T00:00:00Z: anything earlier is an unset clock
COUNTER_MAX = 4294967295  # boot and seq are unsigned 32-bit

COMMANDS = ("set", "get", "ping", "sample", "reboot")
_CMD_KEYS = ("v", "id", "cmd", "args")
_RECEIPT_KEYS = ("v", "node", "ts", "got")


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def _reject_constant(name):
    # CPython's json accepts NaN and Infinity, which are not JSON (RFC 8259).
    raise ValueError("not JSON: " + name)


# CPython: one strict decoder made once (json.loads with keyword arguments builds a new
# decoder per call, which shows in the edge's profile). MicroPython's json has no
# JSONDecoder, takes no keyword arguments, and rejects NaN by itself.
if hasattr(json, "JSONDecoder"):
    _loads = json.JSONDecoder(parse_constant=_reject_constant).decode
else:
    _loads = json.loads


def _too_deep(text):
    """True if JSON text nests arrays/objects deeper than MAX_DEPTH.

    Checked before parsing: CPython's parser recurses once per level and fails with
    RecursionError on a few thousand brackets (which fit in 8 KiB), while MicroPython's
    does not; this rule gives both the same answer. Counting brackets first keeps the
    character scan for the rare payload that has more brackets than MAX_DEPTH at all."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "[" or ch == "{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch == "]" or ch == "}":
            depth -= 1
    return False


def _parse(payload):
    if type(payload) is str:
        text = payload
    else:
        try:
            text = str(payload, "utf-8")
        except Exception:
            raise ProtocolError(BAD_JSON, "payload is not UTF-8")
    if _too_deep(text):
        raise ProtocolError(TOO_LARGE, "JSON nested deeper than %d levels" % MAX_DEPTH)
    try:
        obj = _loads(text)
    except ValueError:
        raise ProtocolError(BAD_JSON, "payload is not valid JSON")
    if type(obj) is not dict:
        raise ProtocolError(NOT_OBJECT, "payload is not a JSON object")
    return obj


def _require(obj, key):
    if key not in obj:
        raise ProtocolError(MISSING_FIELD, key)
    return obj[key]


def _only(obj, allowed, where="message"):
    for key in obj:
        if key not in allowed:
            raise ProtocolError(UNKNOWN_FIELD, "%s has no key %r" % (where, key))


def _number(value, key):
    if type(value) is not int and type(value) is not float:
        raise ProtocolError(BAD_TYPE, key + " must be a number")
    try:
        value = float(value)
    except OverflowError:  # CPython, an integer of hundreds of digits (MicroPython: inf)
        raise ProtocolError(OUT_OF_RANGE, key + " is not finite")
    if value != value or value in (float("inf"), float("-inf")):
        raise ProtocolError(OUT_OF_RANGE, key + " is not finite")
    return value


def decode_command(payload):
    """Decode a command sent to a node on its `cmd` topic: {"id", "cmd", "args"}."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolError(TOO_LARGE, "%d bytes" % len(payload))
    obj = _parse(payload)
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise ProtocolError(BAD_VERSION, "v must be %d" % VERSION)
    _only(obj, _CMD_KEYS)
    cmd_id = _require(obj, "id")
    if not is_slug(cmd_id):
        raise ProtocolError(BAD_ID, "command id must be a slug")
    cmd = _require(obj, "cmd")
    if cmd not in COMMANDS:
        raise ProtocolError(UNKNOWN_FIELD, "no command %r" % (cmd,))
    args = obj.get("args", {})
    if type(args) is not dict:
        raise ProtocolError(BAD_TYPE, "args must be an object")
    if cmd == "set":
        _only(args, ("interval_s", "thresholds"), "set args")
        if not args:
            raise ProtocolError(EMPTY, "set needs interval_s or thresholds")
        if "interval_s" in args:
            interval = _number(args["interval_s"], "interval_s")
            if not thresholds.INTERVAL_MIN_S <= interval <= thresholds.INTERVAL_MAX_S:
                raise ProtocolError(
                    OUT_OF_RANGE,
                    "interval_s outside %d..%d" % (thresholds.INTERVAL_MIN_S, thresholds.INTERVAL_MAX_S),
                )
        limits = args.get("thresholds", {})
        if type(limits) is not dict:
            raise ProtocolError(BAD_TYPE, "thresholds must be an object")
        for name in limits:
            _number(limits[name], name)
    elif args:
        raise ProtocolError(UNKNOWN_FIELD, "%s takes no args" % cmd)
    return {"id": cmd_id, "cmd": cmd, "args": args}


def decode_receipt(payload, node=None):
    """Decode a receipt the edge published on a node's `receipt` topic (SPEC.md 7.1).

    Returns (ts, got): the edge's clock in ms, and the committed ranges, each a list
    [boot, first_seq, last_seq], sorted and not overlapping. Given `node`, a receipt for
    another id is refused. Checks run in the order of SPEC.md section 8.1."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolError(TOO_LARGE, "%d bytes" % len(payload))
    obj = _parse(payload)
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise ProtocolError(BAD_VERSION, "v must be %d" % VERSION)
    sender = _require(obj, "node")
    if not is_slug(sender):
        raise ProtocolError(BAD_ID, "node must be a slug")
    if node is not None and sender != node:
        raise ProtocolError(ID_MISMATCH, "receipt for %r" % (sender,))
    _only(obj, _RECEIPT_KEYS)
    ts = _require(obj, "ts")
    if type(ts) is not int:
        raise ProtocolError(BAD_TYPE, "ts must be an integer (ms since epoch)")
    if ts < TS_MIN_MS:
        raise ProtocolError(BAD_TIME, "ts before 2020")
    got = _require(obj, "got")
    if type(got) is not list:
        raise ProtocolError(BAD_TYPE, "got must be an array")
    if not got:
        raise ProtocolError(EMPTY, "got has no ranges")
    if len(got) > MAX_RECEIPT_RANGES:
        raise ProtocolError(TOO_LARGE, "more than %d ranges" % MAX_RECEIPT_RANGES)
    end = None  # (boot, last_seq) of the range before
    for span in got:
        if type(span) is not list or len(span) != 3:
            raise ProtocolError(BAD_TYPE, "a range is [boot, first_seq, last_seq]")
        for n in span:
            if type(n) is not int:
                raise ProtocolError(BAD_TYPE, "a range holds integers")
            if not 0 <= n <= COUNTER_MAX:
                raise ProtocolError(OUT_OF_RANGE, "%d outside 0..%d" % (n, COUNTER_MAX))
        if span[1] > span[2]:
            raise ProtocolError(OUT_OF_RANGE, "first_seq after last_seq")
        if end is not None and (span[0], span[1]) <= end:
            raise ProtocolError(BAD_BATCH, "ranges unsorted or overlapping")
        end = (span[0], span[2])
    return ts, got


# --- encoders: what nodes (and tests) publish -------------------------------------


def _stamp(obj, ts, age_ms):
    if ts is not None:
        obj["ts"] = ts
    elif age_ms is not None:
        obj["age_ms"] = age_ms
    return obj


def reading_item(boot, seq, fields, ts=None, age_ms=None):
    """One reading as it stands in a batch (and in a node's offline queue)."""
    return _stamp({"boot": boot, "seq": seq, "fields": fields}, ts, age_ms)


def encode_reading(node, kind, boot, seq, fields, ts=None, age_ms=None):
    obj = {"v": VERSION, "node": node, "kind": kind, "boot": boot, "seq": seq, "fields": fields}
    return _dumps(_stamp(obj, ts, age_ms))


def encode_batch(node, kind, items):
    """items: reading_item() dicts in increasing (boot, seq) order."""
    last = items[-1]
    return _dumps(
        {"v": VERSION, "node": node, "kind": kind, "boot": last["boot"], "seq": last["seq"], "batch": items}
    )


def encode_event(
    node, kind, boot, seq, event, state, value=None, severity=None, ts=None, age_ms=None, fields=None
):
    obj = {"v": VERSION, "node": node, "kind": kind, "boot": boot, "seq": seq, "event": event, "state": state}
    if value is not None:
        obj["value"] = value
    if severity is not None:
        obj["severity"] = severity
    if fields:
        obj["fields"] = fields
    return _dumps(_stamp(obj, ts, age_ms))


def encode_status(
    node,
    kind,
    boot,
    seq,
    state,
    fw=None,
    interval_s=None,
    reset=None,
    ts=None,
    age_ms=None,
    first_seq=None,
    dropped=None,
):
    obj = {"v": VERSION, "node": node, "kind": kind, "boot": boot, "seq": seq, "state": state}
    for key, value in (
        ("fw", fw),
        ("interval_s", interval_s),
        ("reset", reset),
        ("first_seq", first_seq),
        ("dropped", dropped),
    ):
        if value is not None:
            obj[key] = value
    return _dumps(_stamp(obj, ts, age_ms))


def encode_ack(node, kind, boot, seq, cmd_id, ok, error=None, result=None):
    obj = {"v": VERSION, "node": node, "kind": kind, "boot": boot, "seq": seq, "id": cmd_id, "ok": ok}
    if error is not None:
        obj["error"] = error
    if result is not None:
        obj["result"] = result
    return _dumps(obj)


def encode_receipt(node, ts, got):
    """A receipt (SPEC.md 7.1): got = up to 8 sorted, disjoint [boot, first_seq, last_seq]."""
    return _dumps({"v": VERSION, "node": node, "ts": ts, "got": got})


def encode_command(cmd_id, cmd, args=None):
    obj = {"v": VERSION, "id": cmd_id, "cmd": cmd}
    if args:
        obj["args"] = args
    return _dumps(obj)
