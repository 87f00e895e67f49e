# Topic scheme of protocol v1 (SPEC.md section 2):
#   city/v1/{district}/{zone}/{node}/{channel}
#   alarms/v1/{district}/{zone}/{node}/{event}
# Plain Python for CPython and MicroPython; no `re`, whose MicroPython subset differs.

VERSION = 1
ROOT = "city"
ALARM_ROOT = "alarms"

TELEMETRY = "telemetry"
EVENT = "event"
STATUS = "status"
CMD = "cmd"
ACK = "cmd/ack"
RECEIPT = "receipt"  # edge -> node: what the edge has committed (SPEC.md 7.1)
CHANNELS = (TELEMETRY, EVENT, STATUS, CMD, ACK, RECEIPT)
# Channels a node publishes on (the edge subscribes to these).
NODE_CHANNELS = (TELEMETRY, EVENT, STATUS, ACK)
# Channels a node reads (the edge publishes on these).
EDGE_CHANNELS = (CMD, RECEIPT)

BAD_TOPIC = "bad_topic"  # the reasons of protocols.errors that topics raise
BAD_ID = "bad_id"
ID_MAX = 32
_SLUG_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"


def _error(reason, detail):
    # Imported when raising only: a node builds its topics with this module, and every
    # module it imports costs heap (the reasons' names alone take ~1 KB there).
    from protocols.errors import ProtocolError

    return ProtocolError(reason, detail)


def is_slug(text):
    if type(text) is not str or not 1 <= len(text) <= ID_MAX:
        return False
    for ch in text:
        if ch not in _SLUG_CHARS:
            return False
    return True


def check_slug(text, what="id"):
    if not is_slug(text):
        raise _error(BAD_ID, "%s %r is not [a-z0-9-]{1,32}" % (what, text))
    return text


def topic(district, zone, node, channel, version=VERSION):
    if channel not in CHANNELS:
        raise _error(BAD_TOPIC, "unknown channel %r" % (channel,))
    check_slug(district, "district")
    check_slug(zone, "zone")
    check_slug(node, "node")
    return "%s/v%d/%s/%s/%s/%s" % (ROOT, version, district, zone, node, channel)


def parse_topic(text):
    """Split a node topic into (version, district, zone, node, channel).

    The version is returned rather than checked so that a receiver serving several
    protocol versions can route by it (SPEC.md section 9)."""
    if type(text) is not str:
        raise _error(BAD_TOPIC, "topic is not text")
    parts = text.split("/")
    if len(parts) == 7 and parts[6] == "ack" and parts[5] == "cmd":
        parts = parts[:5] + [ACK]
    if len(parts) != 6 or parts[0] != ROOT:
        raise _error(BAD_TOPIC, "expected %s/v1/district/zone/node/channel" % ROOT)
    ver = parts[1]
    if len(ver) < 2 or ver[0] != "v" or not ver[1:].isdigit():
        raise _error(BAD_TOPIC, "bad version segment %r" % ver)
    if parts[5] not in CHANNELS:
        raise _error(BAD_TOPIC, "unknown channel %r" % parts[5])
    for what, value in (("district", parts[2]), ("zone", parts[3]), ("node", parts[4])):
        if not is_slug(value):
            raise _error(BAD_TOPIC, "%s %r is not a slug" % (what, value))
    return int(ver[1:]), parts[2], parts[3], parts[4], parts[5]


def receipt_topic(district, zone, node, version=VERSION):
    """Where the edge publishes a node's receipts, and where the node reads them."""
    return topic(district, zone, node, RECEIPT, version)


def zone_filters(district, zone, version=VERSION):
    """MQTT subscription filters for everything the nodes of one zone publish."""
    return [zone_filter(district, zone, ch, version) for ch in NODE_CHANNELS]


def zone_filter(district, zone, channel, version=VERSION):
    """The filter of one channel of every node of a zone (e.g. the receipts an edge writes)."""
    if channel not in CHANNELS:
        raise _error(BAD_TOPIC, "unknown channel %r" % (channel,))
    check_slug(district, "district")
    check_slug(zone, "zone")
    return "%s/v%d/%s/%s/+/%s" % (ROOT, version, district, zone, channel)


def alarm_topic(district, zone, node, event, version=VERSION):
    for what, value in (("district", district), ("zone", zone), ("node", node), ("event", event)):
        check_slug(value, what)
    return "%s/v%d/%s/%s/%s/%s" % (ALARM_ROOT, version, district, zone, node, event)
