"""The buffer database file: connections, and the schema by versioned migrations.

One SQLite file in WAL mode holds everything the edge must not lose or forget. Each table
belongs to one module, which defines it and holds every statement on it:

    outbox, cursors        edge.outbox       line protocol waiting, each consumer's progress
    seen                   edge.identities   the identity index (node, boot, seq)
    dead_letters           edge.deadletters  what the edge or a sink refused
    nodes, node_boots      edge.registry     the node registry
    rollups                edge.rollups      one-minute aggregates
    committed              edge.receipts     per node, the (boot, seq) committed, as ranges
    stamps                 edge.stamps       the timestamps taken, per node and series
    meta                   here              the schema version

`open_database` is the one way a buffer is opened for writing: it brings the schema up
to the newest version, each migration in the same transaction as the version it reaches.
A migration is a function of the connection; `sql(...)` makes one of plain statements.
Adding a table or a column is one line appended to MIGRATIONS (never edit one that has
shipped: buffers in the field are at its version already).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from edge import deadletters, identities, outbox, receipts, registry, rollups, stamps

Migration = Callable[[sqlite3.Connection], None]


def sql(*statements: str) -> Migration:
    """A migration made of plain SQL statements."""

    def run(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return run


# Migration i brings the schema to version i + 1.
MIGRATIONS: tuple[Migration, ...] = (
    sql(
        *outbox.TABLES, *identities.TABLES, *deadletters.TABLES, *registry.TABLES, *rollups.TABLES
    ),  # 1: the first schema
    registry.add_closed_gaps,  # 2: nodes.closed_gaps
    sql(*receipts.TABLES, *stamps.TABLES),  # 3: committed ranges (receipts), timestamps (collisions)
    registry.add_clock_and_loss,  # 4: nodes: clock offset, dropped, moved and estimated times
)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(RuntimeError):
    pass


def connect(path: str | Path, *, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), for one thread."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        # Keep the WAL file from staying large after a burst.
        conn.execute("PRAGMA journal_size_limit=67108864")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The version a database is at; 0 for a new file."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply the migrations a database has not had yet; returns the version it is at."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(conn)
        if version > len(migrations):
            raise SchemaError(
                f"the buffer's schema is version {version}, newer than this edge "
                f"knows ({len(migrations)}): run a newer edge or move the buffer aside"
            )
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for step in migrations[version:]:
            step(conn)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(len(migrations)),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(migrations)


def open_database(path: str | Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open (creating it if needed) the buffer database at the newest schema version."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path, synchronous=synchronous)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database in use (pages minus free pages)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return (pages - free) * size
