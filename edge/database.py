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

import errno
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


# SQLite's own WAL bounds: it checkpoints after 1000 pages and truncates a reset WAL
# to this size.
WAL_LIMIT_BYTES = 64 * 1024 * 1024
WAL_PAGES = 1000


def connect(
    path: str | Path, *, synchronous: str = "FULL", readonly: bool = False, wal_bytes_max: int | None = None
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), for one thread.
    `wal_bytes_max` (the writer's): checkpoint the WAL after about that many bytes and
    truncate it to that size when it is reset (a size cap, a reserve that must hold a
    checkpoint)."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        # Takes effect only in a new, empty file (before journal_mode writes its first
        # page): pages freed by forwarding and the size cap can then be given back to the
        # file system (incremental_vacuum), so the file shrinks, not only the data. An
        # older buffer keeps reusing its free pages instead.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        # Keep the WAL file from staying large after a burst.
        limit = WAL_LIMIT_BYTES if wal_bytes_max is None else min(WAL_LIMIT_BYTES, wal_bytes_max)
        conn.execute(f"PRAGMA journal_size_limit={limit}")
        if wal_bytes_max is not None:
            pages = max(16, min(WAL_PAGES, wal_bytes_max // conn.execute("PRAGMA page_size").fetchone()[0]))
            conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The version a database is at; 0 for a new file."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error. SQLite rolls a transaction
    back by itself after some errors (a full disk, out of memory): a second ROLLBACK then
    fails with "cannot rollback - no transaction is active" and would hide the real cause,
    so it is sent only while a transaction is still open."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def is_disk_full(err: BaseException) -> bool:
    """SQLite's "database or disk is full" (SQLITE_FULL), or the OS's ENOSPC / EDQUOT."""
    if isinstance(err, sqlite3.Error):
        return getattr(err, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def migrate(conn: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply the migrations a database has not had yet; returns the version it is at.
    A database already at the newest version is not written to (an edge restarted on a
    full disk can still open its buffer)."""
    with transaction(conn):
        version = schema_version(conn)
        if version > len(migrations):
            raise SchemaError(
                f"the buffer's schema is version {version}, newer than this edge "
                f"knows ({len(migrations)}): run a newer edge or move the buffer aside"
            )
        if version < len(migrations):
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for step in migrations[version:]:
                step(conn)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(len(migrations)),))
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


def free_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of free pages inside the database file (reused before the file grows)."""
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return free * conn.execute("PRAGMA page_size").fetchone()[0]


def wal_bytes(path: str | Path) -> int:
    """Size of the write-ahead log on disk (0 when there is none)."""
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0


def database_bytes(path: str | Path) -> int:
    """Size of the database file itself (0 when there is none)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def file_bytes(path: str | Path) -> int:
    """What the buffer takes on disk: the database file and its write-ahead log."""
    return database_bytes(path) + wal_bytes(path)


def give_back(conn: sqlite3.Connection, pages: int = 0) -> None:
    """Return free pages to the file system (a buffer with incremental auto-vacuum; up to
    `pages`, 0 for all), then checkpoint and truncate the WAL. Outside a transaction.
    A reader in the middle of a read keeps the WAL from being truncated this time; the
    next call does it."""
    # The WAL goes into the database first: on a full disk, its room is what the moves
    # of incremental_vacuum need.
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    if busy or wal_bytes(conn.execute("PRAGMA database_list").fetchone()[2]):
        return  # not all of the WAL went in: moving pages now would only grow it
    conn.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
