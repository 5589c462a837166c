"""Load the archive's price files into `price_volume_table`, `rejected_rows` and Parquet stage 1.

The files are parsed and checked in this process, or on the workers of a Dask cluster when one is
given (see `shards`); loading the result into the warehouse and the stage is done here.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from etf_assets.constants import META_FILE, PRICE_DIRS, PRICE_HEADER, PRICE_VOLUME_TABLE
from etf_assets.ingest.shards import (
    LOAD_TABLE,
    SHARD_BYTES,
    ParseCounts,
    PriceFile,
    parse_on_cluster,
    parse_price_files,
    register_inputs,
)
from etf_assets.ingest.symbols_meta import Rejected, SymbolsMeta, read_symbols_meta
from etf_assets.storage import parquet_stage
from etf_assets.storage.atomic_dir import publish, remove_leftovers
from etf_assets.storage.disk_space import (
    PRICES_STAGE_BYTES_PER_CSV_BYTE,
    PRICES_TABLE_BYTES_PER_CSV_BYTE,
    SpaceNeed,
    require_space,
)
from etf_assets.storage.warehouse_space import (
    CommittedButNotCheckpointedError,
    commit_or_explain,
    database_path,
    reusable_bytes,
)

if TYPE_CHECKING:
    from etf_assets.cluster.tasks import Cluster

log = logging.getLogger(__name__)

# Beside Parquet stage 1: the shards' Parquet output of a cluster load, a folder per load named
# with this prefix, so that a task left running by a killed load never writes into the next's.
CLUSTER_WORK_PREFIX = ".cluster-ingest-"
# The shards' Parquet output per byte of price CSV (measured: 0.20 on files of a full-size
# archive), rounded up as the factors of `disk_space` are.
SHARD_OUTPUT_BYTES_PER_CSV_BYTE = 0.25


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


def load_space_needs(
    csv_bytes: int, database: Path, stage_dir: Path, reusable: int = 0, on_cluster: bool = False
) -> list[SpaceNeed]:
    """What loading `csv_bytes` of price files adds to the disk: the new table in the warehouse
    file (less the `reusable` bytes of free blocks it holds) and the new Parquet stage 1 (the old
    table and stage are freed only once the new ones are in); `on_cluster`, also the shards'
    output beside the stage, removed once loaded."""
    table = int(csv_bytes * PRICES_TABLE_BYTES_PER_CSV_BYTE) - reusable
    stage = int(csv_bytes * PRICES_STAGE_BYTES_PER_CSV_BYTE)
    needs = [
        SpaceNeed(database.parent, table, f"{PRICE_VOLUME_TABLE} in {database.name}"),
        SpaceNeed(stage_dir.parent, stage, "Parquet stage 1"),
    ]
    if on_cluster:
        shards = int(csv_bytes * SHARD_OUTPUT_BYTES_PER_CSV_BYTE)
        needs.append(SpaceNeed(stage_dir.parent, shards, "the cluster's parsed shards"))
    return needs


def load_prices(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    stage_dir: Path,
    cluster: Cluster | None = None,
    *,
    shard_bytes: int = SHARD_BYTES,
) -> LoadReport:
    """Replace `price_volume_table` and `rejected_rows` from the unpacked archive at `root`.

    With a `cluster`, its workers parse and check the files, a task per shard of about
    `shard_bytes` of CSV, and this process loads what they wrote; the tables, stage and report
    are the same as without.

    Refuses before writing when the disk lacks room for the new table and stage (estimated from
    the CSV bytes). The parsed rows are committed to the load table first (see
    `shards.parse_price_files`); the fixes, the swap of the load table into
    `price_volume_table` and `rejected_rows` are one second transaction, and the Parquet stage
    is swapped in after it, so a failure at any point leaves the previous tables and stage as
    they were; the load table it may leave committed is dropped here when possible, else by
    `warehouse_space.reclaim_warehouse` or the next load. If the commit is durable but DuckDB
    fails to checkpoint it (a full disk), the new stage is swapped in too and
    CommittedButNotCheckpointedError says so.
    """
    meta = read_symbols_meta(root / META_FILE)
    files, early_rejects = list_price_files(root)
    # Holding the warehouse's write lock, no other load is writing a stage or shards beside ours:
    # what is there was left by a killed run, like a load table.
    remove_leftovers(stage_dir)
    for leftover in stage_dir.parent.glob(f"{CLUSTER_WORK_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    _drop_load_table(con)
    database = database_path(con)
    if database is not None:
        csv_bytes = sum(f.size for f in files)
        require_space(
            load_space_needs(
                csv_bytes, database, stage_dir, reusable_bytes(con), on_cluster=cluster is not None
            )
        )
    log.info("reading %d price files under %s", len(files), root)
    register_inputs(con, files, meta, meta.rejected + early_rejects)

    pending = None
    try:
        if cluster is None:
            counts = parse_price_files(con, files)
        else:
            work_dir = stage_dir.parent / f"{CLUSTER_WORK_PREFIX}{uuid.uuid4().hex[:12]}"
            counts = parse_on_cluster(con, cluster, root / META_FILE, files, work_dir, shard_bytes)
        log.info("writing Parquet stage 1 beside %s", stage_dir)
        pending = parquet_stage.write_pending(con, LOAD_TABLE, "price_files", "file_id", stage_dir)
        con.execute(f"ALTER TABLE {LOAD_TABLE} DROP COLUMN file_id")
        con.execute(f"DROP TABLE IF EXISTS {PRICE_VOLUME_TABLE}")
        con.execute(f"ALTER TABLE {LOAD_TABLE} RENAME TO {PRICE_VOLUME_TABLE}")
        report = _report(con, len(files) + len(early_rejects), counts, meta)
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


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    return con.execute(query).fetchone()[0]


def _report(
    con: duckdb.DuckDBPyConnection, files: int, counts: ParseCounts, meta: SymbolsMeta
) -> LoadReport:
    report = LoadReport(
        files=files,
        files_rejected=_count(
            con,
            "SELECT count(*) FROM rejected_rows "
            f"WHERE line_number IS NULL AND file <> '{META_FILE}'",
        ),
        rows_in_archive=counts.rows_in_archive,
        rows_loaded=_count(con, "SELECT count(*) FROM price_volume_table"),
        rows_rejected=_count(
            con,
            "SELECT count(*) FROM rejected_rows WHERE line_number IS NOT NULL "
            f"AND file <> '{META_FILE}'",
        ),
        blank_rows_skipped=counts.blank_lines,
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
