"""Load the archive's price files into `price_volume_table`, `rejected_rows` and Parquet stage 1.

One typed DuckDB scan reads every file; the few files it cannot load exactly (rows the reader
skipped, blank rows among them, fractional or negative volumes, non-finite numbers, dates out of
order) are then reloaded line by line, so each rejected row can name its file and line. The
rules are SQL in `sql/`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from etf_assets.constants import META_FILE, PRICE_DIRS, PRICE_HEADER, PRICE_VOLUME_TABLE
from etf_assets.ingest import sql
from etf_assets.ingest.symbols_meta import (
    Rejected,
    SymbolsMeta,
    read_symbols_meta,
    register_symbols_meta,
)
from etf_assets.storage import parquet_stage
from etf_assets.storage.atomic_dir import publish, remove_leftovers
from etf_assets.storage.disk_space import (
    PRICES_STAGE_BYTES_PER_CSV_BYTE,
    PRICES_TABLE_BYTES_PER_CSV_BYTE,
    SpaceNeed,
    require_space,
)
from etf_assets.storage.progress import logged_progress
from etf_assets.storage.stored_order import files_with_unordered_dates
from etf_assets.storage.warehouse_space import (
    CommittedButNotCheckpointedError,
    commit_or_explain,
    database_path,
    reusable_bytes,
)

log = logging.getLogger(__name__)

# The fast scan's rows, committed, until they replace price_volume_table.
LOAD_TABLE = "price_volume_load"


@dataclass(frozen=True)
class PriceFile:
    symbol: str  # the file name without its final ".csv"
    archive_path: str  # e.g. "stocks/LGF.B.csv"
    path: str
    size: int = 0  # bytes


@dataclass
class LoadReport:
    files: int = 0
    files_rejected: int = 0
    rows_in_archive: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    blank_rows_skipped: int = 0
    symbols_with_rows: int = 0
    meta_rows_rejected: int = 0
    files_without_meta: list[str] = field(default_factory=list)


class AccountingError(RuntimeError):
    """Loaded + rejected + skipped rows do not add up to the rows read: a loader bug, never data."""


def _header_problem(path: Path) -> str | None:
    """Why a file cannot be read at all, judged from its first line, or None."""
    with open(path, "rb") as fh:
        first = fh.readline(4096)
    if not first:
        return "empty file: no header"
    try:
        header = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    if header != PRICE_HEADER:
        return f'header is "{header[:80]}", expected "{PRICE_HEADER}"'
    return None


def list_price_files(root: Path) -> tuple[list[PriceFile], list[Rejected]]:
    """Every readable `stocks/*.csv` and `etfs/*.csv`, and the files rejected whole.

    A symbol seen twice keeps its first file; a file without the dataset's header is rejected.
    """
    files: list[PriceFile] = []
    rejected: list[Rejected] = []
    first_seen: dict[str, str] = {}
    for folder in PRICE_DIRS:
        for path in sorted((root / folder).glob("*.csv")):
            symbol = path.name.removesuffix(".csv")
            archive_path = f"{folder}/{path.name}"
            if symbol in first_seen:
                reason = f"symbol {symbol!r} already loaded from {first_seen[symbol]}"
                rejected.append(Rejected(archive_path, None, reason))
            elif problem := _header_problem(path):
                rejected.append(Rejected(archive_path, None, problem))
            else:
                first_seen[symbol] = archive_path
                files.append(PriceFile(symbol, archive_path, str(path), path.stat().st_size))
    return files, rejected


def _register_inputs(
    con: duckdb.DuckDBPyConnection,
    files: list[PriceFile],
    meta: SymbolsMeta,
    rejected: list[Rejected],
) -> None:
    register_symbols_meta(con, meta)
    con.execute(
        sql.load("register_price_files"),
        {
            "symbol": [f.symbol for f in files],
            "archive_path": [f.archive_path for f in files],
            "path": [f.path for f in files],
        },
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE other_rejections AS
           SELECT unnest($file)::VARCHAR AS file, unnest($line_number)::BIGINT AS line_number,
                  unnest($reason)::VARCHAR AS reason, unnest($content)::VARCHAR AS content""",
        {
            "file": [r.file for r in rejected],
            "line_number": [r.line_number for r in rejected],
            "reason": [r.reason for r in rejected],
            "content": [r.content for r in rejected],
        },
    )


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    return con.execute(query).fetchone()[0]


def load_space_needs(
    csv_bytes: int, database: Path, stage_dir: Path, reusable: int = 0
) -> list[SpaceNeed]:
    """What loading `csv_bytes` of price files adds to the disk: the new table in the warehouse
    file (less the `reusable` bytes of free blocks it holds) and the new Parquet stage 1 (the old
    table and stage are freed only once the new ones are in)."""
    table = int(csv_bytes * PRICES_TABLE_BYTES_PER_CSV_BYTE) - reusable
    stage = int(csv_bytes * PRICES_STAGE_BYTES_PER_CSV_BYTE)
    return [
        SpaceNeed(database.parent, table, f"{PRICE_VOLUME_TABLE} in {database.name}"),
        SpaceNeed(stage_dir.parent, stage, "Parquet stage 1"),
    ]


def load_prices(con: duckdb.DuckDBPyConnection, root: Path, stage_dir: Path) -> LoadReport:
    """Replace `price_volume_table` and `rejected_rows` from the unpacked archive at `root`.

    Refuses before writing when the disk lacks room for the new table and stage (estimated from
    the CSV bytes). The fast scan's rows are committed to the load table first: DuckDB then keeps
    the blocks it wrote while scanning, where deleting irregular files' rows in the same
    transaction would make the commit write every row again. The fixes, the swap of the load
    table into `price_volume_table` and `rejected_rows` are one second transaction, and the
    Parquet stage is swapped in after it, so a failure at any point leaves the previous tables
    and stage as they were; the load table it may leave committed is dropped here when possible,
    else by `warehouse_space.reclaim_warehouse` or the next load. If the commit is durable but
    DuckDB fails to checkpoint it (a full disk), the new stage is swapped in too and
    CommittedButNotCheckpointedError says so.
    """
    meta = read_symbols_meta(root / META_FILE)
    files, early_rejects = list_price_files(root)
    # Holding the warehouse's write lock, no other load is writing a stage beside ours: what is
    # there was left by a killed run, like a load table.
    remove_leftovers(stage_dir)
    _drop_load_table(con)
    database = database_path(con)
    if database is not None:
        csv_bytes = sum(f.size for f in files)
        require_space(load_space_needs(csv_bytes, database, stage_dir, reusable_bytes(con)))
    log.info("reading %d price files under %s", len(files), root)
    _register_inputs(con, files, meta, meta.rejected + early_rejects)
    con.execute(sql.load("create_temp_macros"))

    pending = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="line-count") as counter:
            data_lines = counter.submit(_count_data_lines, files)
            scanned = _scan(con, files)
            _find_irregular_files(con, data_lines.result())
        con.execute("BEGIN TRANSACTION")
        irregular_rows = _reload_irregular_files(con)
        con.execute(sql.load("create_rejected_rows"))
        log.info("writing Parquet stage 1 beside %s", stage_dir)
        pending = parquet_stage.write_pending(con, LOAD_TABLE, "price_files", "file_id", stage_dir)
        con.execute(f"ALTER TABLE {LOAD_TABLE} DROP COLUMN file_id")
        con.execute(f"DROP TABLE IF EXISTS {PRICE_VOLUME_TABLE}")
        con.execute(f"ALTER TABLE {LOAD_TABLE} RENAME TO {PRICE_VOLUME_TABLE}")
        report = _report(con, len(files) + len(early_rejects), scanned - irregular_rows, meta)
        commit_or_explain(con, "the new price_volume_table and rejected_rows")
    except CommittedButNotCheckpointedError:
        publish(pending, stage_dir)  # the tables are the new ones: so must the stage be
        raise
    except BaseException:
        # The pending stage goes first: on a full disk, it is the room the rollback's log needs.
        if pending is not None:
            shutil.rmtree(pending, ignore_errors=True)
        with contextlib.suppress(duckdb.Error):  # none may be open, or the database failed
            con.execute("ROLLBACK")
        _drop_load_table(con)
        raise
    publish(pending, stage_dir)
    return report


def _drop_load_table(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the load table a failed or killed load left committed, and free its blocks for reuse
    (a checkpoint does); never raises, so that it cannot hide the error being handled."""
    try:
        exists = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = $name AND NOT temporary",
            {"name": LOAD_TABLE},
        ).fetchone()[0]
        if exists:
            con.execute(f"DROP TABLE {LOAD_TABLE}")
            con.execute("CHECKPOINT")
    except duckdb.Error as exc:
        log.warning("could not drop %s now (%s); the next load drops it", LOAD_TABLE, exc)


def _scan(con: duckdb.DuckDBPyConnection, files: list[PriceFile]) -> int:
    """Read every price file into the load table in one typed scan; return the rows read."""
    start = time.monotonic()
    with logged_progress(con, log, "reading price files", len(files), "files"):
        con.execute("BEGIN TRANSACTION")
        con.execute(sql.load("scan_price_files"), {"paths": [f.path for f in files]})
        con.execute("COMMIT")
    scanned = _count(con, f"SELECT count(*) FROM {LOAD_TABLE}")
    elapsed = max(time.monotonic() - start, 1e-9)
    log.info(
        "read %s rows of %s files in %.1f s (%s rows/s)",
        f"{scanned:,}",
        f"{len(files):,}",
        elapsed,
        f"{scanned / elapsed:,.0f}",
    )
    return scanned


def _count_data_lines(files: list[PriceFile]) -> list[int]:
    """The lines after the header of each file, empty lines included.

    The typed scan skips the rows it cannot read; a file with fewer rows than lines is then
    reloaded line by line. Counting newlines runs beside the scan on the other core; having the
    reader record its rejects instead (store_rejects) slows the scan itself.
    """
    newline = ord("\n")
    counts = []
    for file in files:
        content = np.fromfile(file.path, dtype=np.uint8)
        lines = int(np.count_nonzero(content == newline))
        if len(content) and content[-1] != newline:
            lines += 1  # the last line has no newline
        counts.append(max(lines - 1, 0))
    return counts


def _find_irregular_files(con: duckdb.DuckDBPyConnection, data_lines: list[int]) -> None:
    """Fill `irregular_files`: the files whose fast-scan rows are not exactly what they hold.

    `data_lines` holds each price file's lines after the header, in `price_files` order.
    """
    con.execute(sql.load("profile_loaded_files"))
    unordered = files_with_unordered_dates(con, LOAD_TABLE)
    con.execute(
        sql.load("find_irregular_files"),
        {"data_lines": data_lines, "unordered_files": unordered},
    )


def _reload_irregular_files(con: duckdb.DuckDBPyConnection) -> int:
    """Replace the fast scan's rows of irregular files by the line-by-line path's; return how
    many fast-scan rows were removed."""
    paths = [
        row[0]
        for row in con.execute(
            "SELECT path FROM price_files WHERE file_id IN (SELECT file_id FROM irregular_files)"
        ).fetchall()
    ]
    log.info("%d files need the line-by-line path", len(paths))
    removed = con.execute(
        f"DELETE FROM {LOAD_TABLE} WHERE file_id IN (SELECT file_id FROM irregular_files)"
    ).fetchone()[0]
    if paths:
        con.execute(sql.load("stage_price_lines"), {"paths": paths})
    else:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE price_lines "
            "(file_id BIGINT, line_number BIGINT, line VARCHAR)"
        )
    con.execute(sql.load("find_rejected_files"))
    con.execute(sql.load("parse_price_lines"))
    con.execute(sql.load("find_duplicate_dates"))
    con.execute(sql.load("insert_line_parsed_prices"))
    return removed


def _report(
    con: duckdb.DuckDBPyConnection, files: int, fast_rows: int, meta: SymbolsMeta
) -> LoadReport:
    report = LoadReport(
        files=files,
        files_rejected=_count(
            con,
            "SELECT count(*) FROM rejected_rows "
            f"WHERE line_number IS NULL AND file <> '{META_FILE}'",
        ),
        rows_in_archive=fast_rows + _count(con, "SELECT count(*) FROM parsed_prices"),
        rows_loaded=_count(con, "SELECT count(*) FROM price_volume_table"),
        rows_rejected=_count(
            con,
            "SELECT count(*) FROM rejected_rows WHERE line_number IS NOT NULL "
            f"AND file <> '{META_FILE}'",
        ),
        blank_rows_skipped=_count(con, "SELECT count(*) FROM parsed_prices WHERE is_blank"),
        symbols_with_rows=_count(con, "SELECT count(DISTINCT symbol) FROM price_volume_table"),
        meta_rows_rejected=len(meta.rejected),
        files_without_meta=[
            row[0]
            for row in con.execute(
                """SELECT archive_path FROM price_files
                   WHERE symbol NOT IN (SELECT symbol FROM symbols_meta)
                   ORDER BY archive_path"""
            ).fetchall()
        ],
    )
    accounted = report.rows_loaded + report.rows_rejected + report.blank_rows_skipped
    if accounted != report.rows_in_archive:
        raise AccountingError(
            f"loaded {report.rows_loaded} + rejected {report.rows_rejected} + blank "
            f"{report.blank_rows_skipped} = {accounted}, "
            f"but the archive has {report.rows_in_archive} rows"
        )
    return report
