# The protocol's own unit tests, in plain Python so that the same file runs under CPython
# (through pytest, see test_protocol.py) and under the MicroPython unix port.
# Each test_* function raises AssertionError (or anything else) on failure.
#   usage under MicroPython: micropython selftest.py   -> one "PASS name" / "FAIL name: why" per test
import sys

from protocols import catalog, codec, decoder, thresholds, topics
from protocols.errors import REASONS, ProtocolError

NOW = 1795334400000
T = NOW - 60000


def expect_reason(reason, fn, *args):
    try:
        fn(*args)
    except ProtocolError as e:
        assert e.reason == reason, "expected %s, got %s (%s)" % (reason, e.reason, e.detail)
        return e
    raise AssertionError("expected ProtocolError(%s), nothing raised" % reason)


def test_slugs():
    for good in ("a", "p-0001", "0", "x" * 32, "xuhui", "a-b-c"):
        assert topics.is_slug(good), good
    for bad in ("", "x" * 33, "A", "p_1", "p 1", "p/1", "p+1", "p#", None, 5, "\u00e9"):
        assert not topics.is_slug(bad), repr(bad)


def test_topic_round_trip_every_channel():
    for channel in topics.CHANNELS:
        t = topics.topic("xuhui", "caohejing", "p-0001", channel)
        assert t == "city/v1/xuhui/caohejing/p-0001/" + channel, t
        assert topics.parse_topic(t) == (1, "xuhui", "caohejing", "p-0001", channel)


def test_topic_errors():
    expect_reason("bad_topic", topics.topic, "xuhui", "caohejing", "p-1", "nope")
    expect_reason("bad_id", topics.topic, "Xuhui", "caohejing", "p-1", "telemetry")
    for bad in (
        "city/v1/a/b/c",
        "city/v1/a/b/c/d/e",
        "city/x1/a/b/c/telemetry",
        "city/v/a/b/c/telemetry",
        "city/v1/a/b/C/telemetry",
        "city/v1/a/b/c/cmd/nack",
        "/city/v1/a/b/c/telemetry",
        "",
        "city/v1/a//c/telemetry",
    ):
        expect_reason("bad_topic", topics.parse_topic, bad)
    assert topics.parse_topic("city/v7/a/b/c/status")[0] == 7


def test_zone_filters_and_alarm_topic():
    filters = topics.zone_filters("xuhui", "caohejing")
    assert filters == [
        "city/v1/xuhui/caohejing/+/telemetry",
        "city/v1/xuhui/caohejing/+/event",
        "city/v1/xuhui/caohejing/+/status",
        "city/v1/xuhui/caohejing/+/cmd/ack",
    ], filters
    assert (
        topics.alarm_topic("xuhui", "caohejing", "m-1", "cover-open")
        == "alarms/v1/xuhui/caohejing/m-1/cover-open"
    )
    expect_reason("bad_id", topics.alarm_topic, "xuhui", "caohejing", "m-1", "cover_open")


def test_receipt_topic_and_filter():
    assert topics.receipt_topic("xuhui", "caohejing", "p-0001") == "city/v1/xuhui/caohejing/p-0001/receipt"
    assert topics.zone_filter("xuhui", "caohejing", topics.RECEIPT) == "city/v1/xuhui/caohejing/+/receipt"
    assert topics.RECEIPT not in topics.NODE_CHANNELS
    assert topics.EDGE_CHANNELS == (topics.CMD, topics.RECEIPT)
    expect_reason("bad_topic", topics.zone_filter, "xuhui", "caohejing", "nope")
    expect_reason("bad_id", topics.receipt_topic, "xuhui", "caohejing", "P-1")


def test_receipt_round_trip():
    got = [[3, 0, 9], [4, 0, 2], [4, 4, 4]]
    raw = codec.encode_receipt("p-1", NOW, got)
    assert codec.decode_receipt(raw) == (NOW, got)
    assert codec.decode_receipt(raw, "p-1") == (NOW, got)
    assert codec.decode_receipt(raw.decode()) == (NOW, got)
    expect_reason("id_mismatch", codec.decode_receipt, raw, "p-2")
    # A receiver decodes only what nodes send; a receipt is for the node.
    expect_reason("bad_topic", decoder.decode, "city/v1/d/z/p-1/receipt", raw, NOW)


def test_receipt_limits_are_exact():
    eight = [[4, 2 * i, 2 * i] for i in range(codec.MAX_RECEIPT_RANGES)]
    assert len(codec.decode_receipt(codec.encode_receipt("p-1", NOW, eight))[1]) == 8
    expect_reason("too_large", codec.decode_receipt, codec.encode_receipt("p-1", NOW, eight + [[4, 99, 99]]))
    # Adjacent ranges do not overlap; a shared seq does.
    assert codec.decode_receipt(codec.encode_receipt("p-1", NOW, [[4, 0, 3], [4, 4, 5]]))[1][1] == [4, 4, 5]
    expect_reason("bad_batch", codec.decode_receipt, codec.encode_receipt("p-1", NOW, [[4, 0, 3], [4, 3, 5]]))
    raw = codec.encode_receipt("p-1", NOW, [[4, 0, 3]])
    padded = raw + b" " * (codec.MAX_MESSAGE_BYTES - len(raw))
    assert codec.decode_receipt(padded)[0] == NOW
    expect_reason("too_large", codec.decode_receipt, padded + b" ")


def test_birth_carries_loss_accounting():
    raw = codec.encode_status("p-1", "parking", 5, 20, "online", ts=T, first_seq=7, dropped=3)
    msg = decoder.decode("city/v1/d/z/p-1/status", raw, NOW)
    assert (msg["first_seq"], msg["dropped"]) == (7, 3), msg
    plain = decoder.decode(
        "city/v1/d/z/p-1/status", codec.encode_status("p-1", "parking", 5, 20, "online"), NOW
    )
    assert plain["first_seq"] is None and plain["dropped"] is None


def test_catalog_is_consistent():
    assert tuple(sorted(catalog.KINDS)) == tuple(sorted(catalog.KIND_FIELDS))
    for kind in catalog.KINDS:
        fields = catalog.fields_of(kind)
        for name in fields:
            ftype, unit, low, high = fields[name]
            assert ftype in (catalog.FLOAT, catalog.BOOL), name
            if ftype == catalog.FLOAT:
                assert low < high, name
            else:
                assert low is None and high is None, name
        assert kind in thresholds.THRESHOLDS, kind
        assert kind in thresholds.DEFAULT_INTERVAL_S, kind
        assert "battery-low" in catalog.events_of(kind)
    assert catalog.fields_of("noise") is None
    for name in catalog.EVENTS:
        assert topics.is_slug(name), name
        kinds, severity = catalog.EVENTS[name]
        assert severity in catalog.SEVERITIES
        assert kinds == "*" or all(k in catalog.KINDS for k in kinds), name


def test_thresholds_named_in_the_design():
    assert thresholds.THRESHOLDS["manhole"]["tilt_deg"] == 10.0
    assert thresholds.THRESHOLDS["manhole"]["ch4_lel"] == 10.0
    assert thresholds.THRESHOLDS["manhole"]["h2s_ppm"] == 10.0
    assert thresholds.THRESHOLDS["air"]["pm25"] == 75.0


def test_reading_round_trip():
    fields = {"occupied": True, "mag_x": 10.5, "mag_y": -2, "mag_z": 44.0, "battery_v": 3.6}
    raw = codec.encode_reading("p-1", "parking", 2, 7, fields, ts=T)
    msg = decoder.decode("city/v1/d/z/p-1/telemetry", raw, NOW)
    assert msg["channel"] == "telemetry" and msg["kind"] == "parking"
    assert msg["readings"] == [{"boot": 2, "seq": 7, "ts": T, "time_source": "node", "fields": fields}], msg


def test_reading_without_clock():
    raw = codec.encode_reading("l-1", "leak", 0, 0, {"wet": False}, age_ms=250)
    msg = decoder.decode("city/v1/d/z/l-1/telemetry", raw, NOW)
    assert msg["readings"][0]["ts"] == NOW - 250
    assert msg["readings"][0]["time_source"] == "edge"


def test_batch_round_trip():
    items = [codec.reading_item(1, s, {"tilt_deg": s * 1.0}, age_ms=(10 - s) * 1000) for s in range(1, 11)]
    raw = codec.encode_batch("m-1", "manhole", items)
    msg = decoder.decode("city/v1/d/z/m-1/telemetry", raw, NOW)
    assert [r["seq"] for r in msg["readings"]] == list(range(1, 11))
    assert msg["readings"][-1]["ts"] == NOW
    assert msg["readings"][0]["fields"] == {"tilt_deg": 1.0}


def test_batch_of_64_fits_8k():
    items = [
        codec.reading_item(1, s, {"occupied": True, "mag_x": 10.25, "mag_y": -3.5, "mag_z": 45.75}, ts=T)
        for s in range(64)
    ]
    raw = codec.encode_batch("p-0001", "parking", items)
    assert len(raw) <= codec.MAX_BATCH_BYTES, len(raw)
    assert len(decoder.decode("city/v1/d/z/p-0001/telemetry", raw, NOW)["readings"]) == 64


def test_event_round_trip():
    raw = codec.encode_event(
        "m-1", "manhole", 3, 9, "tilt", True, value=15.0, ts=T, fields={"tilt_deg": 15.0}
    )
    msg = decoder.decode("city/v1/d/z/m-1/event", raw, NOW)
    assert msg["event"] == "tilt" and msg["state"] is True
    assert msg["severity"] == "warning" and msg["value"] == 15.0
    assert msg["fields"] == {"tilt_deg": 15.0}
    assert (msg["boot"], msg["seq"], msg["ts"]) == (3, 9, T)


def test_status_and_will():
    raw = codec.encode_status("a-1", "air", 4, 0, "online", fw="1.2.3", interval_s=60, reset="power", ts=T)
    msg = decoder.decode("city/v1/d/z/a-1/status", raw, NOW)
    assert (msg["state"], msg["fw"], msg["interval_s"], msg["reset"]) == ("online", "1.2.3", 60.0, "power")
    will = decoder.decode("city/v1/d/z/a-1/status", codec.encode_status("a-1", "air", 4, 0, "offline"), NOW)
    assert will["state"] == "offline" and will["ts"] is None


def test_ack_and_command():
    raw = codec.encode_command("c-7", "set", {"interval_s": 30, "thresholds": {"pm25": 50}})
    cmd = codec.decode_command(raw)
    assert cmd == {"id": "c-7", "cmd": "set", "args": {"interval_s": 30, "thresholds": {"pm25": 50}}}
    ack = decoder.decode(
        "city/v1/d/z/a-1/cmd/ack",
        codec.encode_ack("a-1", "air", 4, 3, "c-7", True, result={"interval_s": 30}),
        NOW,
    )
    assert ack["channel"] == "cmd/ack" and ack["ok"] is True and ack["id"] == "c-7"
    expect_reason("unknown_field", codec.decode_command, codec.encode_command("c-8", "dance"))


def test_size_limits_are_exact():
    head = codec.encode_reading("p-1", "parking", 1, 1, {"occupied": True}, ts=T)
    exact = head + b" " * (codec.MAX_MESSAGE_BYTES - len(head))
    assert len(exact) == 1024
    decoder.decode("city/v1/d/z/p-1/telemetry", exact, NOW)
    expect_reason("too_large", decoder.decode, "city/v1/d/z/p-1/telemetry", exact + b" ", NOW)


def test_non_finite_numbers_rejected():
    raw = b'{"v":1,"node":"p-1","kind":"parking","boot":1,"seq":1,"ts":%d,"fields":{"mag_x":1e999}}' % T
    expect_reason("out_of_range", decoder.decode, "city/v1/d/z/p-1/telemetry", raw, NOW)


def test_brackets_inside_strings_are_not_nesting():
    raw = codec.encode_status("p-1", "parking", 1, 1, "online", fw="[" * 40 + "{" * 20, ts=T)
    assert decoder.decode("city/v1/d/z/p-1/status", raw, NOW)["fw"] == "[" * 40 + "{" * 20
    deep = b'{"v":1,"id":"c-1","cmd":"ping","args":' + b"[" * 40 + b"]" * 40 + b"}"
    expect_reason("too_large", codec.decode_command, deep)


def test_kind_mismatch_is_a_reason():
    # kind_mismatch is raised by receivers that know each node's kind (SPEC section 8).
    assert "kind_mismatch" in REASONS
    assert len(set(REASONS)) == len(REASONS)


def test_error_message_carries_reason():
    e = expect_reason(
        "unknown_kind", decoder.decode, "city/v1/d/z/p-1/telemetry", b'{"v":1,"node":"p-1","kind":"x"}', NOW
    )
    assert str(e).startswith("unknown_kind"), str(e)
    assert isinstance(e, ValueError)


def main():
    failed = 0
    names = [n for n in sorted(globals()) if n.startswith("test_")]
    for name in names:
        try:
            globals()[name]()
            print("PASS " + name)
        except Exception as e:
            failed += 1
            print("FAIL %s: %s %s" % (name, type(e).__name__, e))
    print("%d passed, %d failed" % (len(names) - failed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
