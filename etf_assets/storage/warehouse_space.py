"""The DuckDB warehouse's own use of the disk: room it can reuse, and what a failed write leaves.

DuckDB writes a large insert straight into new blocks at the end of the file. When such a write
finds the disk full, the transaction is rolled back and the blocks are forgotten, but the file
keeps the length it reached: a failed load can leave the disk full of bytes no table uses, and
DuckDB only shortens its file when a checkpoint frees the blocks at its end, which needs room for
the write-ahead log first. `reclaim_warehouse` gives those bytes back.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

# DuckDB's file starts with its main header and two alternating database headers, 4 KiB each;
# block n then lives at HEADER_BYTES + n * block size (the storage format of DuckDB 0.10 to 2.x;
# etf_assets_tests/test_disk_full.py checks it against the installed DuckDB).
HEADER_BYTES = 3 * 4096


class CommittedButNotCheckpointedError(RuntimeError):
    """DuckDB made a commit durable in its write-ahead log but could not checkpoint it (a full
    disk): the change is in, and the database must be reopened, with room, to be used again."""


def commit_or_explain(con: duckdb.DuckDBPyConnection, what: str) -> None:
    """COMMIT; a failure after the commit became durable raises CommittedButNotCheckpointedError
    (naming `what` was committed), any other failure propagates: nothing was committed."""
    try:
        con.execute("COMMIT")
    except duckdb.Error as exc:
        if "commit succeeded and is durable" not in str(exc).lower():
            raise
        raise CommittedButNotCheckpointedError(
            f"{what} were committed and are durable in DuckDB's write-ahead log, but DuckDB "
            f"could not write them into the warehouse file: {exc}"
        ) from exc


def database_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The file of `con`'s current database, or None for an in-memory one."""
    row = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return Path(row[0]) if row and row[0] else None


def reusable_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """Bytes of free blocks inside the database file, which new tables fill before the file
    grows (the blocks of tables replaced since the file was last shortened)."""
    row = con.execute("PRAGMA database_size").fetchone()
    block_size, free_blocks = row[2], row[5]
    return int(block_size) * int(free_blocks)


def wal_path(database: Path) -> Path:
    return database.with_name(database.name + ".wal")


def trim_unused_tail(database: Path) -> int:
    """Cut the bytes past DuckDB's last block off `database`; return how many were cut.

    Only when no write-ahead log is waiting: its committed changes may live in blocks past the
    last checkpointed one. The read-only connection held meanwhile keeps every writer out.
    """
    wal = wal_path(database)
    if not database.is_file() or (wal.exists() and wal.stat().st_size > 0):
        return 0
    with duckdb.connect(str(database), read_only=True) as con:
        row = con.execute("PRAGMA database_size").fetchone()
        end = HEADER_BYTES + int(row[2]) * int(row[3])  # block size x total blocks
        size = database.stat().st_size
        if size <= end:
            return 0
        os.truncate(database, end)
    return size - end


def reclaim_warehouse(database: Path, leftover_tables: Iterable[str] = ()) -> int:
    """Give back the disk space a failed write left in the warehouse; return the bytes freed.

    Must run with no connection to `database` open in this process. Cuts the unused tail of the
    file (which frees room for the log of what follows), drops `leftover_tables` (fixed names of
    tables a failed step committed on its way, e.g. the price load table) and checkpoints, which
    lets DuckDB shorten its file by the blocks those tables held at its end. Never raises: what
    it cannot do now, the next run's own writes reuse.
    """
    if not database.is_file():
        return 0
    before = database.stat().st_size
    try:
        trim_unused_tail(database)
        tables = list(leftover_tables)
        if tables or wal_path(database).exists():  # replaying a log needs a read-write open
            with duckdb.connect(str(database)) as con:
                existing = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
                for table in tables:
                    if table in existing:
                        con.execute(f"DROP TABLE {table}")
                con.execute("CHECKPOINT")
            trim_unused_tail(database)
    except (duckdb.Error, OSError) as exc:
        log.warning("could not give back the space of %s: %s", database, exc)
    with contextlib.suppress(OSError):
        return max(before - database.stat().st_size, 0)
    return 0
