"""The buffer database's schema: versioned migrations, and buffers made by earlier edges.

A buffer in the field was made by an earlier edge; opening it must bring it to the newest
schema with every row kept. The old files here are made with the schema SQL those edges
ran, exactly as they shipped it."""

from __future__ import annotations

import sqlite3

import pytest

from edge import database, deadletters, identities, outbox
from edge.buffer import DurableBuffer
from edge.database import MIGRATIONS, SCHEMA_VERSION, SchemaError, migrate, sql
from edge.outbox import Stream
from edge.registry import NodeRegistry

# The schema of every buffer made so far, as edge/buffer.py ran it at start (schema_version
# 1). Buffers made before `closed_gaps` existed lack that column and still say version 1.
SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,          -- arrival time at the edge (for lag)
    n INTEGER NOT NULL,              -- lines in this row
    topic TEXT,                      -- alarms: the topic to publish on
    body TEXT NOT NULL               -- line protocol, one line per line; alarms: JSON
);
CREATE INDEX IF NOT EXISTS outbox_stream ON outbox(stream, id);
CREATE TABLE IF NOT EXISTS cursors (
    consumer TEXT NOT NULL, stream INTEGER NOT NULL, last_id INTEGER NOT NULL,
    PRIMARY KEY (consumer, stream));
CREATE TABLE IF NOT EXISTS seen (node TEXT NOT NULL, boot INTEGER NOT NULL,
    seq INTEGER NOT NULL, at_ms INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS seen_identity ON seen(node, boot, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL, reason TEXT NOT NULL, topic TEXT, payload BLOB,
    detail TEXT, source TEXT NOT NULL DEFAULT 'ingest');
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters(reason);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY, district TEXT, zone TEXT, kind TEXT,
    first_seen_ms INTEGER, last_arrival_ms INTEGER, last_seen_ms INTEGER,
    online INTEGER, battery_v REAL, rssi REAL, fw TEXT, interval_s REAL, reset TEXT,
    boot INTEGER, seq INTEGER, seq_gaps INTEGER NOT NULL DEFAULT 0, health_ms INTEGER,
    closed_gaps INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS node_boots (
    node TEXT NOT NULL, boot INTEGER NOT NULL, first_seq INTEGER NOT NULL,
    max_seq INTEGER NOT NULL, received INTEGER NOT NULL, PRIMARY KEY (node, boot));
CREATE TABLE IF NOT EXISTS rollups (
    node TEXT NOT NULL, minute_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    district TEXT NOT NULL, zone TEXT NOT NULL, agg TEXT NOT NULL,
    dirty INTEGER NOT NULL, PRIMARY KEY (node, minute_ms));
CREATE INDEX IF NOT EXISTS rollups_dirty ON rollups(minute_ms) WHERE dirty = 1;
CREATE INDEX IF NOT EXISTS rollups_minute ON rollups(minute_ms);
"""
SCHEMA_1_BEFORE_CLOSED_GAPS = SCHEMA_1.replace(
    ", health_ms INTEGER,\n    closed_gaps INTEGER NOT NULL DEFAULT 0);", ", health_ms INTEGER);"
)


def old_buffer(path, schema: str) -> None:
    """A buffer as an earlier edge left it: its schema, version 1, a row in every table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(schema)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', '1')")
        conn.executemany(
            "INSERT INTO outbox (stream, at_ms, n, topic, body) VALUES (?, ?, ?, NULL, ?)",
            [(4, 10, 1, "events x=1 1"), (1, 11, 2, "air a=1 1\nair a=2 2")],
        )
        conn.execute("INSERT INTO cursors VALUES ('district', 1, 0)")
        conn.execute("INSERT INTO seen VALUES ('l-1', 1, 7, 1000)")
        conn.execute(
            "INSERT INTO dead_letters (at_ms, reason, topic, payload, detail)"
            " VALUES (5, 'bad_json', 't', x'7b', 'd')"
        )
        conn.execute(
            "INSERT INTO nodes (node, district, zone, kind, first_seen_ms, last_arrival_ms,"
            " online, seq_gaps) VALUES ('l-1', 'd', 'z', 'leak', 1, 2, 1, 3)"
        )
        conn.execute("INSERT INTO node_boots VALUES ('l-1', 1, 0, 9, 7)")
        conn.execute("INSERT INTO rollups VALUES ('l-1', 60000, 'leak', 'd', 'z', '{}', 1)")
    conn.close()


def shape(conn: sqlite3.Connection) -> dict:
    """Every table's columns (name, type, not null, default, key) and every index."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    out = {t: conn.execute(f"PRAGMA table_info({t})").fetchall() for t in tables}
    out["indexes"] = conn.execute(
        "SELECT name, tbl_name FROM sqlite_master WHERE type='index' ORDER BY name"
    ).fetchall()
    return out


def fresh_shape(tmp_path) -> dict:
    buf = DurableBuffer(tmp_path / "fresh" / "buffer.db")
    conn = buf.connect()
    try:
        return shape(conn)
    finally:
        conn.close()


@pytest.mark.parametrize(
    "schema", [SCHEMA_1, SCHEMA_1_BEFORE_CLOSED_GAPS], ids=["schema-1", "schema-1-before-closed-gaps"]
)
def test_a_buffer_of_schema_1_opens_migrated_with_every_row_kept(tmp_path, schema):
    path = tmp_path / "old" / "buffer.db"
    old_buffer(path, schema)
    buf = DurableBuffer(path)
    conn = buf.connect()
    assert database.schema_version(conn) == SCHEMA_VERSION
    assert shape(conn) == fresh_shape(tmp_path)
    # every row is where it was
    assert [(r.body, r.n) for r in outbox.read(conn, Stream.RAW, 0, 100)] == [("air a=1 1\nair a=2 2", 2)]
    assert [r.body for r in outbox.read(conn, Stream.EVENT, 0, 100)] == ["events x=1 1"]
    assert outbox.cursor(conn, "district", Stream.RAW) == 0
    assert identities.first_times(conn, [("l-1", 1, 7, 2000)]) == set()  # still known
    assert [(d["reason"], d["payload"]) for d in deadletters.newest(conn, 10)] == [("bad_json", b"{")]
    registry = NodeRegistry()
    registry.load(conn)
    state = registry.nodes["l-1"]
    assert state.kind == "leak" and state.online is True and state.closed_gaps == 0
    assert state.seq_gaps == 9 - 0 + 1 - 7  # rebuilt from the per-boot accounting
    assert conn.execute("SELECT count(*) FROM rollups").fetchone()[0] == 1
    conn.close()
    # opening it again changes nothing
    again = DurableBuffer(path).connect()
    assert database.schema_version(again) == SCHEMA_VERSION and shape(again) == fresh_shape(tmp_path)


def test_a_new_buffer_is_at_the_newest_version(tmp_path):
    conn = DurableBuffer(tmp_path / "buffer.db").connect()
    assert database.schema_version(conn) == SCHEMA_VERSION == len(MIGRATIONS)
    stored = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert stored == (str(SCHEMA_VERSION),)


def test_a_migration_appended_is_applied_once(tmp_path):
    conn = database.open_database(tmp_path / "buffer.db")
    later = MIGRATIONS + (sql("CREATE TABLE receipts (node TEXT PRIMARY KEY, seq INTEGER)"),)
    assert migrate(conn, later) == SCHEMA_VERSION + 1
    assert migrate(conn, later) == SCHEMA_VERSION + 1  # nothing left to do
    assert conn.execute("PRAGMA table_info(receipts)").fetchall()
    assert database.schema_version(conn) == SCHEMA_VERSION + 1


def test_a_failing_migration_leaves_the_buffer_as_it_was(tmp_path):
    conn = database.open_database(tmp_path / "buffer.db")
    before = shape(conn)
    broken = MIGRATIONS + (sql("CREATE TABLE receipts (node TEXT)", "CREATE TABLE nodes (x)"),)
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        migrate(conn, broken)
    assert shape(conn) == before and database.schema_version(conn) == SCHEMA_VERSION


def test_a_buffer_of_a_newer_edge_is_refused_untouched(tmp_path):
    path = tmp_path / "buffer.db"
    conn = database.open_database(path)
    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.close()
    with pytest.raises(SchemaError, match=f"version {SCHEMA_VERSION + 1}, newer than this edge"):
        DurableBuffer(path)
    check = database.connect(path, readonly=True)
    assert database.schema_version(check) == SCHEMA_VERSION + 1
