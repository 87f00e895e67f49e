"""Receipts, timestamp collisions, clocks and loss accounting in-process, on a real SQLite
buffer: the committed ranges and what a receipt lists, the timestamp index, and the commit
loop that owes each node its receipt (protocols/SPEC.md 3.2, 6.4, 7.1)."""

from __future__ import annotations

import json
import random
import time

import pytest

from edge import database, receipts, stamps
from edge.buffer import DurableBuffer
from edge.ingest import Inbox, Incoming
from edge.metrics import EdgeMetrics
from edge.outbox import Stream
from edge.pipeline import CommitLoop
from edge.receiver import row_of
from edge.registry import NodeRegistry
from edge.rollups import RollupBook
from protocols import codec

D, Z = "xuhui", "caohejing"


def topic(node: str, channel: str) -> str:
    return f"city/v1/{D}/{Z}/{node}/{channel}"


def now_ms() -> int:
    return int(time.time() * 1000)


# -- the ranges ---------------------------------------------------------------------------


def test_ranges_merge_as_seqs_arrive_in_any_order():
    rng = random.Random(3)
    seqs = [s for s in range(40) if s not in (7, 20, 21)]
    rng.shuffle(seqs)
    ranges: list[list[int]] = []
    for seq in seqs:
        at = receipts.add(ranges, 2, seq)
        assert ranges[at][1] <= seq <= ranges[at][2]
    assert ranges == [[2, 0, 6], [2, 8, 19], [2, 22, 39]]
    receipts.add(ranges, 1, 5)  # an older boot sorts first
    receipts.add(ranges, 2, 7)  # fills a hole: two ranges become one
    receipts.add(ranges, 2, 7)  # already there: nothing changes
    assert ranges == [[1, 5, 5], [2, 0, 19], [2, 22, 39]]
    assert receipts.holding(ranges, 2, 30) == 2


def test_a_receipt_lists_what_the_group_touched_then_the_newest():
    ranges = [[3, 0, 9]] + [[4, s, s] for s in range(0, 40, 2)]  # 21 ranges
    # seq 4 of boot 3 resent after many newer ones: its range is listed, then the 7 newest
    [got] = receipts.receipt_ranges(ranges, {(3, 4)})
    assert got == [[3, 0, 9]] + [[4, s, s] for s in range(26, 40, 2)]
    # More than 8 ranges touched: 8 to a receipt, oldest first, the last one filled up
    # with the newest.
    touched = {(4, s) for s in range(0, 20, 2)}  # 10 ranges
    assert receipts.receipt_ranges(ranges, touched) == [
        [[4, s, s] for s in range(0, 16, 2)],
        [[4, 16, 16], [4, 18, 18]] + [[4, s, s] for s in range(28, 40, 2)],
    ]
    # a copy: the edge may change its ranges while a receipt is being published
    got[0][2] = 99
    assert ranges[0] == [3, 0, 9]


def test_ranges_keep_the_newest_boots_and_a_bounded_number():
    ranges = [[b, 0, 5] for b in range(1, 7)]
    receipts.trim(ranges)
    assert [r[0] for r in ranges] == [3, 4, 5, 6]
    many = [[9, s, s] for s in range(0, 200, 2)]
    receipts.trim(many)
    assert len(many) == receipts.MAX_RANGES and many[-1] == [9, 198, 198]


def test_committed_ranges_survive_a_restart_and_confirm_an_old_boot(tmp_path):
    conn = database.open_database(tmp_path / "b.db")
    book = receipts.CommittedRanges()
    conn.execute("BEGIN")
    for boot in range(1, 6):
        for seq in range(3):
            book.add(D, Z, "p-1", boot, seq)
    owed = book.flush(conn)
    conn.execute("COMMIT")
    assert owed == {"p-1": (D, Z, [[[b, 0, 2] for b in range(1, 6)]])}
    again = receipts.CommittedRanges()
    again.load(conn)
    assert again.ranges == {"p-1": [[b, 0, 2] for b in range(2, 6)]}
    # A resend from a boot no longer kept is confirmed all the same, then forgotten again.
    conn.execute("BEGIN")
    again.add(D, Z, "p-1", 1, 1)
    assert again.flush(conn)["p-1"][2] == [[[1, 1, 1]] + [[b, 0, 2] for b in range(2, 6)]]
    conn.execute("COMMIT")
    assert conn.execute("SELECT DISTINCT boot FROM committed ORDER BY boot").fetchall() == [
        (2,),
        (3,),
        (4,),
        (5,),
    ]
    payloads = receipts.receipt_messages(owed, 1795334340123)
    assert payloads[0][0] == topic("p-1", "receipt")
    assert codec.decode_receipt(payloads[0][1], "p-1") == (1795334340123, [[b, 0, 2] for b in range(1, 6)])


def test_the_table_holds_the_ranges_after_every_group(tmp_path):
    conn = database.open_database(tmp_path / "b.db")
    book = receipts.CommittedRanges()
    rng = random.Random(11)
    for _ in range(60):  # groups of records in any order, holes filled later, new boots
        conn.execute("BEGIN")
        for _ in range(rng.randint(1, 12)):
            book.add(D, Z, f"p-{rng.randint(1, 3)}", rng.randint(1, 6), rng.randint(0, 60))
        book.flush(conn)
        conn.execute("COMMIT")
        stored = receipts.CommittedRanges()
        stored.load(conn)
        assert stored.ranges == book.ranges


def test_receipt_payload_is_the_reference_encoders_bytes():
    rng = random.Random(5)
    for _ in range(200):
        got = sorted(
            [rng.randint(0, codec.COUNTER_MAX), rng.randint(0, 99), rng.randint(100, codec.COUNTER_MAX)]
            for _ in range(rng.randint(1, 8))
        )
        node = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(rng.randint(1, 32)))
        ts = rng.randint(1_577_836_800_000, 4_102_444_800_000)
        assert receipts.receipt_payload(node, ts, got) == codec.encode_receipt(node, ts, got)


def test_a_later_receipt_replaces_the_ones_it_covers_and_keeps_the_others():
    owed = receipts.OwedReceipts()
    owed.add({"p-1": (D, Z, [[[1, 0, 3]]]), "p-2": (D, Z, [[[1, 0, 0]]])}, 1.0)
    owed.add({"p-1": (D, Z, [[[1, 0, 9]]])}, 2.0)
    assert owed.since == 1.0  # the oldest owed sets the window
    assert owed.take() == {"p-1": (D, Z, [[[1, 0, 9]]]), "p-2": (D, Z, [[[1, 0, 0]]])}
    assert len(owed) == 0
    # A range the newer receipts do not hold (trimmed away, or one of more than 8 ranges
    # listed in an earlier receipt) keeps its receipt, published first.
    first = [[[b, 0, 2] for b in range(1, 9)], [[9, 0, 2]]]
    owed.add({"p-1": (D, Z, first)}, 3.0)
    owed.add({"p-1": (D, Z, [[[b, 0, 2] for b in range(3, 9)] + [[9, 0, 5]]])}, 4.0)
    assert owed.take()["p-1"][2] == [first[0], [[b, 0, 2] for b in range(3, 9)] + [[9, 0, 5]]]


def _readings(node: str, seqs: range, t: int) -> list[Incoming]:
    return [
        incoming(topic(node, "telemetry"), codec.encode_reading(node, "air", 1, s, {"pm25": 1.0}, ts=t + s))
        for s in seqs
    ]


@pytest.mark.parametrize(
    ("window_s", "receipts_of_a"), [(3600.0, [[[1, 0, 5]]]), (0.0, [[[1, 0, s]] for s in range(6)])]
)
def test_a_backlog_gets_one_receipt_per_node_per_window(loop, window_s, receipts_of_a):
    """Messages waiting in the inbox, one group each: with a window longer than the test
    the loop publishes once, when the inbox is empty (idle), each node's newest ranges;
    with no window, after every group."""
    import threading

    loop, sent = loop
    loop.max_messages = 1
    loop.receipt_window_s = window_s
    t = now_ms() - 1000
    for m in _readings("a-1", range(6), t):
        loop.inbox.put(m)
    loop.inbox.put(_readings("b-1", range(1), t)[0])
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not any(t_.endswith("/b-1/receipt") for t_, _ in sent) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        runner.join(30)
    of_a = [codec.decode_receipt(p)[1] for t_, p in sent if t_ == topic("a-1", "receipt")]
    assert of_a == receipts_of_a
    assert loop.metrics.receipts._value.get() == len(sent)


def test_an_event_waiting_stops_the_receipts_and_the_rest_stay_owed(loop):
    from edge.pipeline import URGENT_CHECK_EVERY

    loop, sent = loop
    t = now_ms() - 1000
    loop.commit([_readings(f"a-{i}", range(1), t)[0] for i in range(3 * URGENT_CHECK_EVERY)])
    event = codec.encode_event("m-1", "manhole", 2, 0, "tilt", True, ts=t)
    loop.inbox.put(incoming(topic("m-1", "event"), event), urgent=True)
    loop.publish_receipts()
    assert len(sent) == URGENT_CHECK_EVERY  # the first slice, then the event was seen
    assert len(loop.owed) == 2 * URGENT_CHECK_EVERY
    loop.commit(loop.inbox.take(10, 0))
    loop.publish_receipts()  # no event waits now: the rest, and the event's
    assert sorted(t_ for t_, _ in sent) == sorted(
        [topic(f"a-{i}", "receipt") for i in range(3 * URGENT_CHECK_EVERY)] + [topic("m-1", "receipt")]
    )
    assert loop.metrics.receipts._value.get() == len(sent)


# -- the timestamp index ------------------------------------------------------------------------


def test_a_taken_timestamp_moves_to_the_next_free_millisecond(tmp_path):
    conn = database.open_database(tmp_path / "b.db")
    index = stamps.TimestampIndex()
    t = 1795334340000
    conn.execute("BEGIN")
    got = index.claim(conn, [("l-1", "", t), ("l-1", "", t), ("l-1", "", t + 1), ("l-2", "", t)], t)
    # The first of equal points keeps its time, as does a point whose time is free; the
    # moved one takes the next ms left. Another node's series is its own.
    assert got == [t, t + 2, t + 1, t]
    got = index.claim(conn, [("l-1", "", t), ("l-1", "leak/critical", t)], t)
    assert got == [t + 3, t]
    # Free again after a taken run, whoever claims (an index that remembers nothing).
    assert stamps.TimestampIndex().claim(conn, [("l-1", "", t + 1)], t) == [t + 4]
    conn.execute("COMMIT")
    # Forgotten with the identities, after dedup_hours.
    conn.execute("BEGIN")
    assert stamps.prune(conn, t + 1) == 7
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM stamps").fetchone()[0] == 0


def test_a_stuck_clock_costs_the_edge_a_query_per_reading_not_a_walk(tmp_path):
    """A node whose every reading asks for one time: each claim reads a few rows, however
    long the run of taken milliseconds has grown (counted with SQLite's own hook)."""
    conn = database.open_database(tmp_path / "b.db")
    index = stamps.TimestampIndex()
    t = 1795334340000
    steps = []
    conn.set_progress_handler(lambda: steps.append(1), 100)
    conn.execute("BEGIN")
    cost = []
    for _ in range(30):
        before = len(steps)
        got = index.claim(conn, [("s-1", "", t)] * 100, t)
        cost.append(len(steps) - before)
        assert len(set(got)) == 100
    assert sorted(r[0] for r in conn.execute("SELECT ts FROM stamps")) == list(range(t, t + 3000))
    # The last group, with 2,900 taken before it, costs about what the second did.
    assert cost[-1] < 2 * cost[1], cost
    # After a restart (no remembered runs) the run is read in chunks of stamps.SCAN rows
    # and the reading still lands just past it, a few rows from the end of a chunk too.
    assert stamps.TimestampIndex().claim(conn, [("s-1", "", t + 5)], t) == [t + 3000]
    conn.execute("DELETE FROM stamps WHERE ts=?", (t + stamps.SCAN + 2,))
    assert stamps.TimestampIndex().claim(conn, [("s-1", "", t)], t) == [t + stamps.SCAN + 2]
    conn.execute("COMMIT")


# -- the commit loop ---------------------------------------------------------------------------


@pytest.fixture
def loop(tmp_path):
    buf = DurableBuffer(tmp_path / "buffer.db")
    consumers = {Stream.RAW: ["district"], Stream.HEALTH: ["district"], Stream.EVENT: ["district"]}
    commit_loop = CommitLoop(
        buf,
        NodeRegistry(max_clock_offset_s=120),
        RollupBook(),
        EdgeMetrics(),
        Inbox(),
        lambda batch: len(batch),
        consumers,
        want_rollups=False,
        want_alarms=False,
    )
    commit_loop.prepare()
    sent: list[tuple[str, bytes]] = []

    def publish(messages: list[tuple[str, bytes]]) -> None:
        # Published only after COMMIT: the loop's transaction is over by now.
        assert not commit_loop.conn.in_transaction
        sent.extend(messages)

    commit_loop.publish_receipts_to = publish
    yield commit_loop, sent
    commit_loop.close()


def incoming(topic_: str, payload: bytes, arrival: int | None = None, handed_over: bool = False) -> Incoming:
    """A message as the commit loop takes it; `handed_over`: from a receiving process, which
    decoded it and made its readings' lines already (edge.receiver.row_of)."""
    m = Incoming(0, 1, topic_, payload, arrival or now_ms(), 0, None, len(payload))
    if handed_over:
        m.decoded, m.lines = row_of(m)[8:]
        assert m.decoded is not None
    return m


def test_one_receipt_per_node_per_group_for_new_and_duplicate_records(loop):
    loop, sent = loop
    t = now_ms() - 1000
    group = [
        incoming(topic("a-1", "telemetry"), codec.encode_reading("a-1", "air", 1, s, {"pm25": 1.0}, ts=t + s))
        for s in range(3)
    ]
    group.append(
        incoming(topic("m-1", "event"), codec.encode_event("m-1", "manhole", 2, 0, "tilt", True, ts=t))
    )
    group.append(
        incoming(topic("p-1", "status"), codec.encode_status("p-1", "parking", 1, 0, "online", ts=t))
    )
    loop.commit(group)
    assert sent == []  # owed: published once the loop is idle or its window is over
    loop.publish_receipts()
    got = {t_: codec.decode_receipt(p)[1] for t_, p in sent}
    # status consumes no seq and triggers no receipt
    assert got == {topic("a-1", "receipt"): [[1, 0, 2]], topic("m-1", "receipt"): [[2, 0, 0]]}
    sent.clear()
    loop.commit(group[1:2])  # a resend: a duplicate, confirmed again
    loop.publish_receipts()
    assert [(t_, codec.decode_receipt(p)[1]) for t_, p in sent] == [(topic("a-1", "receipt"), [[1, 0, 2]])]
    assert loop.conn.execute("SELECT count(*) FROM seen").fetchone()[0] == 4


@pytest.mark.parametrize("handed_over", [False, True], ids=["decoded-here", "from-a-receiving-process"])
def test_colliding_times_are_moved_marked_and_counted(loop, handed_over):
    loop, _ = loop
    arrival = now_ms()
    # A batch of clockless readings that waited at the broker: one arrival, one age. (A
    # receiving process made their lines at their own times: the moved ones are made again.)
    items = [codec.reading_item(1, s, {"wet": False}, age_ms=500) for s in range(5)]
    msgs = [
        incoming(topic("l-1", "telemetry"), codec.encode_batch("l-1", "leak", items), arrival, handed_over)
    ]
    # Two events of one series at the same time, and one of another series.
    for seq, name in ((5, "leak"), (6, "leak"), (7, "battery-low")):
        msgs.append(
            incoming(
                topic("l-1", "event"),
                codec.encode_event("l-1", "leak", 1, seq, name, True, age_ms=500),
                arrival,
            )
        )
    loop.commit(msgs)
    lines = (
        loop.conn.execute("SELECT body FROM outbox WHERE stream=?", (Stream.RAW,)).fetchone()[0].split("\n")
    )
    times = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert times == [arrival - 500 + i for i in range(5)]
    assert all(" time_estimated=true," in line for line in lines)
    events = [
        r[0] for r in loop.conn.execute("SELECT body FROM outbox WHERE stream=? ORDER BY id", (Stream.EVENT,))
    ]
    assert [int(e.rsplit(" ", 1)[1]) - (arrival - 500) for e in events] == [0, 1, 0]
    state = loop.registry.nodes["l-1"]
    assert (state.ts_collisions, state.estimated_times) == (4 + 1, 8)
    assert loop.metrics.ts_collisions._value.get() == 5
    # A resend of the moved reading is a duplicate: not moved again, not counted again.
    loop.commit(msgs[:1])
    assert loop.registry.nodes["l-1"].ts_collisions == 5


def test_a_reading_timed_by_the_node_is_written_as_it_always_was(loop):
    loop, _ = loop
    t = now_ms() - 1000
    loop.commit(
        [incoming(topic("a-2", "telemetry"), codec.encode_reading("a-2", "air", 1, 0, {"pm25": 3.0}, ts=t))]
    )
    line = loop.conn.execute("SELECT body FROM outbox WHERE stream=?", (Stream.RAW,)).fetchone()[0]
    assert line == f"air,district={D},node=a-2,zone={Z} pm25=3 {t}"


def _parking(node: str, seq: int, ts: int, arrival: int) -> Incoming:
    reading = codec.encode_reading(node, "parking", 1, seq, {"occupied": True}, ts=ts)
    return incoming(topic(node, "telemetry"), reading, arrival)


def test_a_clock_an_hour_behind_is_flagged_and_a_delayed_message_does_not_flag(loop, caplog):
    loop, _ = loop
    now = now_ms()
    hour = 3_600_000
    birth = codec.encode_status("p-2", "parking", 1, 0, "online", ts=now - hour)
    behind = [incoming(topic("p-2", "status"), birth, now)] + [
        _parking("p-2", s, now - hour, now) for s in (0, 1)
    ]
    # A good clock whose first message waited 10 min at the broker, then a live one; and
    # a node heard once, late.
    good = [_parking("p-3", 0, now - 600_000, now), _parking("p-3", 1, now - 20, now)]
    late = [_parking("p-4", 0, now - 600_000, now)]
    loop.commit(behind + good + late)
    nodes = loop.registry.nodes
    assert (nodes["p-2"].clock_offset_ms, nodes["p-2"].clock_bad) == (-hour, True)
    assert (nodes["p-3"].clock_offset_ms, nodes["p-3"].clock_bad) == (-20.0, False)
    assert (nodes["p-4"].clock_offset_ms, nodes["p-4"].clock_bad) == (-600_000.0, False)
    assert [r.getMessage() for r in caplog.records if "clock" in r.getMessage()] == [
        "node p-2: clock off by -3600.0 s (limit 120 s)"
    ]
    row = loop.conn.execute("SELECT clock_offset_ms, clock_bad FROM nodes WHERE node='p-2'").fetchone()
    assert row == (-hour, 1)  # written with the transaction that flagged it
    health = loop.conn.execute("SELECT body FROM outbox WHERE stream=?", (Stream.HEALTH,)).fetchone()[0]
    p2 = next(h for h in health.split("\n") if "node=p-2" in h)
    assert "clock_bad=true,clock_offset_ms=-3600000," in p2
    # After a restart the stored estimate stands: one more message behind keeps the flag.
    again = NodeRegistry(max_clock_offset_s=120)
    again.load(loop.conn)
    again.on_clock("p-2", now - hour, now + 5)
    assert again.nodes["p-2"].clock_bad is True


def test_a_birth_first_seq_counts_readings_lost_at_the_start_of_a_boot(loop):
    loop, _ = loop
    t = now_ms() - 1000
    # The birth says the oldest record not confirmed is seq 0; 0..4 never arrive.
    msgs = [
        incoming(
            topic("l-3", "status"),
            codec.encode_status("l-3", "leak", 2, 9, "online", ts=t, first_seq=0, dropped=3),
        )
    ]
    msgs += [
        incoming(
            topic("l-3", "telemetry"), codec.encode_reading("l-3", "leak", 2, s, {"wet": False}, ts=t + s)
        )
        for s in range(5, 10)
    ]
    # Another node whose birth comes after its readings, with a first_seq above them.
    msgs += [
        incoming(
            topic("l-4", "telemetry"), codec.encode_reading("l-4", "leak", 1, s, {"wet": False}, ts=t + s)
        )
        for s in range(3, 6)
    ]
    msgs.append(
        incoming(
            topic("l-4", "status"), codec.encode_status("l-4", "leak", 1, 5, "online", ts=t, first_seq=6)
        )
    )
    loop.commit(msgs)
    assert loop.registry.nodes["l-3"].seq_gaps == 5
    assert loop.registry.nodes["l-3"].dropped == 3
    assert loop.registry.nodes["l-4"].seq_gaps == 0
    # The gap closes as the lost readings come after all (a node resending them).
    loop.commit(
        [
            incoming(
                topic("l-3", "telemetry"), codec.encode_reading("l-3", "leak", 2, s, {"wet": False}, ts=t + s)
            )
            for s in range(5)
        ]
    )
    assert loop.registry.nodes["l-3"].seq_gaps == 0
    again = NodeRegistry()
    again.load(loop.conn)
    assert (again.nodes["l-3"].seq_gaps, again.nodes["l-3"].dropped) == (0, 3)


def test_an_event_moved_off_a_collision_is_republished_at_its_stored_time(tmp_path):
    buf = DurableBuffer(tmp_path / "buffer.db")
    consumers = {Stream.RAW: ["d"], Stream.HEALTH: ["d"], Stream.EVENT: ["d"], Stream.ALARM: ["alarms"]}
    loop = CommitLoop(
        buf, NodeRegistry(), RollupBook(), EdgeMetrics(), Inbox(), len, consumers, want_rollups=False
    )
    loop.prepare()
    arrival = now_ms()
    loop.commit(
        [
            incoming(
                topic("m-2", "event"),
                codec.encode_event("m-2", "manhole", 1, s, "tilt", s == 0, age_ms=100),
                arrival,
            )
            for s in range(2)
        ]
    )
    alarms = [
        json.loads(r[0])
        for r in loop.conn.execute("SELECT body FROM outbox WHERE stream=? ORDER BY id", (Stream.ALARM,))
    ]
    assert [(a["seq"], a["ts"] - (arrival - 100)) for a in alarms] == [(0, 0), (1, 1)]
    loop.close()
