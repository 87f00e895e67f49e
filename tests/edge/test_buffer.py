"""DurableBuffer on a real SQLite file: identities, cursors, collection, the size cap."""

from __future__ import annotations

import sqlite3

from edge import deadletters, identities, outbox
from edge.buffer import DurableBuffer
from edge.database import used_bytes
from edge.deadletters import DeadLetter
from edge.outbox import Stream


def make(tmp_path, **kw) -> tuple[DurableBuffer, sqlite3.Connection]:
    buf = DurableBuffer(tmp_path / "state" / "buffer.db", **kw)
    return buf, buf.connect()


def first_time(conn: sqlite3.Connection, node: str, boot: int, seq: int, at_ms: int) -> bool:
    return bool(identities.first_times(conn, [(node, boot, seq, at_ms)]))


def test_wal_and_synchronous_full_by_default(tmp_path):
    buf, conn = make(tmp_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    _, conn2 = make(tmp_path / "n", synchronous="normal")
    assert conn2.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_identity_is_accepted_once_and_survives_reopening(tmp_path):
    buf, conn = make(tmp_path)
    assert first_time(conn, "p-1", 3, 17, 1000)
    assert not first_time(conn, "p-1", 3, 17, 2000)
    assert first_time(conn, "p-1", 4, 17, 2000)
    conn.close()
    buf2, conn2 = make(tmp_path)
    assert not first_time(conn2, "p-1", 3, 17, 3000)


def test_identities_are_pruned_by_age_only(tmp_path):
    buf, conn = make(tmp_path)
    for seq in range(100):
        first_time(conn, "p-1", 1, seq, 1000 + seq)
    assert identities.prune(conn, before_ms=1050) == 50
    assert first_time(conn, "p-1", 1, 10, 5000)  # forgotten
    assert not first_time(conn, "p-1", 1, 60, 5000)  # still known


def test_each_consumer_has_its_own_cursor_and_rows_go_once_all_passed(tmp_path):
    buf, conn = make(tmp_path)
    consumers = {
        Stream.RAW: ["district"],
        Stream.ROLLUP: [],
        Stream.HEALTH: ["district", "city"],
        Stream.EVENT: ["district", "city"],
        Stream.ALARM: [],
    }
    outbox.keep_cursors(conn, consumers)
    for i in range(10):
        outbox.append(conn, Stream.EVENT, [f"events v={i}"], 1000 + i)
        outbox.append(conn, Stream.HEALTH, [f"node_health v={i}"], 1000 + i)
    rows = outbox.read(conn, Stream.EVENT, 0, 4)
    assert [r.body for r in rows] == [f"events v={i}" for i in range(4)]
    outbox.advance(conn, "district", Stream.EVENT, rows[-1].id)
    assert outbox.collect(conn, consumers) == 0  # city has not passed them
    outbox.advance(conn, "city", Stream.EVENT, rows[1].id)
    assert outbox.collect(conn, consumers) == 2
    assert [r.body for r in outbox.read(conn, Stream.EVENT, 0, 100)][0] == "events v=2"
    # cursors never go backwards
    outbox.advance(conn, "city", Stream.EVENT, 1)
    assert outbox.cursor(conn, "city", Stream.EVENT) == rows[1].id


def test_ids_keep_growing_after_the_outbox_empties(tmp_path):
    # A cursor is an id: a reused id after collection would be skipped by every consumer.
    buf, conn = make(tmp_path)
    consumers = {Stream.RAW: ["s"]}
    outbox.keep_cursors(conn, consumers)
    outbox.append(conn, Stream.RAW, ["air a=1"], 1)
    last = outbox.read(conn, Stream.RAW, 0, 10)[-1].id
    outbox.advance(conn, "s", Stream.RAW, last)
    outbox.collect(conn, consumers)
    outbox.append(conn, Stream.RAW, ["air a=2"], 2)
    assert outbox.read(conn, Stream.RAW, last, 10)[0].id > last


def test_read_respects_the_line_budget_but_returns_at_least_one_row(tmp_path):
    buf, conn = make(tmp_path)
    outbox.append(conn, Stream.RAW, ["a x=1"] * 64, 1)
    outbox.append(conn, Stream.RAW, ["a x=2"], 1)
    rows = outbox.read(conn, Stream.RAW, 0, 10)
    assert len(rows) == 1 and rows[0].n == 64


def test_cap_drops_oldest_telemetry_first_and_never_events(tmp_path):
    buf, conn = make(tmp_path, max_bytes=400_000)
    payload = "x" * 200
    for i in range(3000):
        outbox.append(conn, Stream.RAW, [f'air,node=n{i} v="{payload}" {i}'], i)
        if i % 100 == 0:
            outbox.append(conn, Stream.EVENT, [f"events,node=n{i} state=true {i}"], i)
    assert used_bytes(conn) > 400_000
    rows, lines = buf.enforce_cap(conn)
    assert rows > 0 and lines == rows
    assert used_bytes(conn) <= 400_000
    events = outbox.read(conn, Stream.EVENT, 0, 10_000)
    assert len(events) == 30  # every event survived
    raw = outbox.read(conn, Stream.RAW, 0, 100_000)
    assert raw and len(raw) < 3000
    kept = [int(r.body.rsplit(" ", 1)[1]) for r in raw]
    assert kept == list(range(3000 - len(raw), 3000))  # the newest telemetry is what is left


def test_dead_letters_are_kept_and_bounded(tmp_path):
    buf, conn = make(tmp_path, dead_letter_max_rows=100)
    for i in range(150):
        deadletters.add(conn, DeadLetter("bad_json", "city/v1/x/y/z/telemetry", b"{", "detail", i))
    assert buf.prune_dead_letters(conn) == 50
    rows = deadletters.newest(conn, 1000)
    assert len(rows) == 100 and rows[0]["reason"] == "bad_json" and rows[0]["payload"] == b"{"


def test_registry_counts_seq_gaps_per_boot_and_survives_reloading(tmp_path):
    from edge import models
    from edge.registry import KEEP_BOOTS, NodeRegistry

    buf, conn = make(tmp_path)

    def reading(boot, seq):
        return models.READINGS["leak"].model_validate(
            {
                "district": "d",
                "zone": "z",
                "node": "l-1",
                "kind": "leak",
                "arrival_ms": 1000 + seq,
                "boot": boot,
                "seq": seq,
                "ts": 1795334340000 + seq,
                "time_source": "node",
                "fields": {"wet": False},
            }
        )

    reg = NodeRegistry()
    for boot, seq in [(1, 0), (1, 1), (1, 4), (2, 10), (2, 12), (1, 2)]:
        reg.on_reading(reading(boot, seq))
    reg.flush(conn, 5000, full=True)
    assert reg.nodes["l-1"].seq_gaps == 1 + 1  # boot 1 misses 3, boot 2 misses 11
    again = NodeRegistry()
    again.load(conn)
    assert again.nodes["l-1"].seq_gaps == 2 and again.kind_of("l-1") == "leak"
    # boots beyond KEEP_BOOTS leave the accounting, their gaps stay counted
    for boot in range(3, 3 + KEEP_BOOTS):
        again.on_reading(reading(boot, 0))
    again.flush(conn, 6000, full=True)
    assert again.nodes["l-1"].seq_gaps == 2
    third = NodeRegistry()
    third.load(conn)
    assert third.nodes["l-1"].seq_gaps == 2 and len(third.boots["l-1"]) == KEEP_BOOTS
