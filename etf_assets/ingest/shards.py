"""Parse and check price files on one DuckDB connection: all of them, or a shard on a worker.

One typed DuckDB scan reads every file; the few files it cannot load exactly (rows the reader
skipped, blank rows among them, fractional or negative volumes, non-finite numbers, dates out of
order) are then reloaded line by line, so each rejected row can name its file and line. The
rules are SQL in `sql/`.

A local load runs `parse_price_files` on the warehouse connection for every file. A cluster load
(`parse_on_cluster`) cuts the files into shards of consecutive files and runs `ingest_shard` for
each on the workers: the same parsing on an in-memory connection, whose rows and rejected rows
the task writes as Parquet for the run's process to load.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from etf_assets.ingest import sql
from etf_assets.ingest.symbols_meta import (
    Rejected,
    SymbolsMeta,
    read_symbols_meta,
    register_symbols_meta,
)
from etf_assets.storage.parquet_stage import quote_path
from etf_assets.storage.progress import logged_progress
from etf_assets.storage.stored_order import files_with_unordered_dates

if TYPE_CHECKING:
    from etf_assets.cluster.tasks import Cluster

log = logging.getLogger(__name__)

# The fast scan's rows, committed, until they replace price_volume_table.
LOAD_TABLE = "price_volume_load"
# CSV bytes per shard of a cluster load: the full dataset (3.1 GB) makes about 50 shards, several
# per worker, so that faster workers take more of them and a worker lost costs one shard's rerun.
SHARD_BYTES = 64 * 1024**2
# Parquet 2 encodings: the shards' rows take a third less room than with DuckDB's defaults, and
# are written as fast.
SHARD_WRITE_OPTIONS = "FORMAT parquet, PARQUET_VERSION V2"
ROWS_FILE = "rows.parquet"
REJECTS_FILE = "rejects.parquet"


@dataclass(frozen=True)
class PriceFile:
    symbol: str  # the file name without its final ".csv"
    archive_path: str  # e.g. "stocks/LGF.B.csv"
    path: str
    size: int = 0  # bytes


@dataclass(frozen=True)
class ParseCounts:
    """What parsing found, for the load's report and its accounting check."""

    rows_scanned: int = 0  # rows of the typed scan
    rows_replaced: int = 0  # of those, the rows of irregular files, parsed again line by line
    lines_parsed: int = 0  # non-empty data lines of the line-by-line path
    blank_lines: int = 0  # of those, dates without values: skipped, not rejected

    def __add__(self, other: ParseCounts) -> ParseCounts:
        return ParseCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def rows_in_archive(self) -> int:
        return self.rows_scanned - self.rows_replaced + self.lines_parsed


def register_inputs(
    con: duckdb.DuckDBPyConnection,
    files: list[PriceFile],
    meta: SymbolsMeta,
    rejected: list[Rejected],
) -> None:
    """The temp tables parsing reads: `symbols_meta`, `price_files` (`files` numbered from 0 in
    list order) and `other_rejections` (the `rejected` rows, which `rejected_rows` takes in)."""
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


def parse_price_files(con: duckdb.DuckDBPyConnection, files: list[PriceFile]) -> ParseCounts:
    """Fill the load table and `rejected_rows` from `files`, registered by `register_inputs`.

    The typed scan's rows are committed to the load table first: DuckDB then keeps the blocks it
    wrote while scanning, where deleting irregular files' rows in the same transaction would make
    the commit write every row again. The fixes and `rejected_rows` are left in an open
    transaction, which the caller commits with what it adds (a local load: the swap into
    `price_volume_table`) or rolls back.
    """
    con.execute(sql.load("create_temp_macros"))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="line-count") as counter:
        data_lines = counter.submit(_count_data_lines, files)
        scanned = _scan(con, files)
        _find_irregular_files(con, data_lines.result())
    con.execute("BEGIN TRANSACTION")
    replaced = _reload_irregular_files(con)
    con.execute(sql.load("create_rejected_rows"))
    return ParseCounts(
        rows_scanned=scanned,
        rows_replaced=replaced,
        lines_parsed=_count(con, "SELECT count(*) FROM parsed_prices"),
        blank_lines=_count(con, "SELECT count(*) FROM parsed_prices WHERE is_blank"),
    )


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    return con.execute(query).fetchone()[0]


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


def plan_shards(
    files: list[PriceFile], shard_bytes: int = SHARD_BYTES, min_shards: int = 1
) -> list[range]:
    """Cut `files` into runs of consecutive files of about equal bytes: as many runs as it takes
    for `shard_bytes` each, but at least `min_shards` and at most one per file. Return each
    run's positions in `files`.

    Consecutive, so that a shard's DuckDB scan, which numbers its files from 0, numbers them as
    the run's process does but for the shard's first position, which `ingest_shard` adds.
    """
    total = sum(f.size for f in files)
    count = max(1, min(len(files), max(min_shards, math.ceil(total / shard_bytes))))
    bytes_through = list(itertools.accumulate(f.size for f in files))
    ends: list[int] = []
    for shard in range(1, count):
        # The shard ends with the file that takes the bytes to shard/count of the total, yet holds
        # a file and leaves one for each shard after it.
        end = bisect.bisect_left(bytes_through, total * shard / count) + 1
        ends.append(min(max(end, ends[-1] + 1 if ends else 1), len(files) - (count - shard)))
    ends.append(len(files))
    return [range(start, end) for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def ingest_shard(
    meta_path: str, files: list[PriceFile], first_file_id: int, shard_dir: str
) -> ParseCounts:
    """A worker's task: parse and check `files` (the run's files `first_file_id` onwards) as
    `parse_price_files` does, and write their rows (`file_id` as the run numbers them) and
    rejected rows to ROWS_FILE and REJECTS_FILE in `shard_dir`.

    Each file is written under a name of its own and then renamed over the one of a previous
    attempt, so a task run again leaves one copy of its output.
    """
    folder = Path(shard_dir)
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        register_inputs(con, files, read_symbols_meta(Path(meta_path)), [])
        counts = parse_price_files(con, files)
        _write_parquet(
            con, sql.load("select_shard_rows"), folder / ROWS_FILE, {"first": first_file_id}
        )
        _write_parquet(con, "SELECT * FROM rejected_rows", folder / REJECTS_FILE)
    finally:
        con.close()
    return counts


def _write_parquet(
    con: duckdb.DuckDBPyConnection, query: str, path: Path, parameters: dict | None = None
) -> None:
    """Write the rows of `query` to `path` through a file of this attempt's own beside it."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        con.execute(f"COPY ({query}) TO {quote_path(partial)} ({SHARD_WRITE_OPTIONS})", parameters)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def parse_on_cluster(
    con: duckdb.DuckDBPyConnection,
    cluster: Cluster,
    meta_path: Path,
    files: list[PriceFile],
    work_dir: Path,
    shard_bytes: int = SHARD_BYTES,
) -> ParseCounts:
    """Fill the load table and `rejected_rows` as `parse_price_files` does, the parsing done by
    the cluster's workers, a task per shard of `files` writing under `work_dir` (shards of
    `shard_bytes`, but enough of them for every worker to take some).

    `files` are registered by `register_inputs` in this connection (their `file_id`s and the
    rejections found before parsing). The load table is committed and `rejected_rows` left in an
    open transaction, as `parse_price_files` leaves them; `work_dir` is removed.
    """
    start = time.monotonic()
    shards = plan_shards(files, shard_bytes, cluster.min_tasks)
    folders = [work_dir / f"shard-{number:05d}" for number in range(len(shards))]
    arguments = [
        (str(meta_path), files[shard.start : shard.stop], shard.start, str(folder))
        for shard, folder in zip(shards, folders, strict=True)
    ]
    log.info("parsing %d price files as %d shards on the cluster", len(files), len(shards))
    counts = ParseCounts()
    try:
        # Each shard's rows go into the load table as soon as its task is done, while the
        # workers parse the others; the load table is committed once it holds them all.
        con.execute("BEGIN TRANSACTION")
        for done, (position, shard_counts) in enumerate(
            cluster.completed("ingest-shard", ingest_shard, arguments)
        ):
            statement = "create_load_table_from_shard" if done == 0 else "insert_shard_rows"
            con.execute(sql.load(statement), {"path": str(folders[position] / ROWS_FILE)})
            counts += shard_counts
        con.execute("COMMIT")
        con.execute("BEGIN TRANSACTION")
        rejects = [str(folder / REJECTS_FILE) for folder in folders]
        con.execute(sql.load("create_rejected_rows_from_shards"), {"paths": rejects})
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    log.info(
        "read %s rows of %s files in %d shards on the cluster in %.1f s",
        f"{counts.rows_scanned:,}",
        f"{len(files):,}",
        len(shards),
        time.monotonic() - start,
    )
    return counts
