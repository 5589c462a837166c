"""Bring `features_table` and Parquet stage 2 up to date for a set of symbols: find the stale
ones, check the disk, cut them into batches, and compute, insert and stage each batch (in this
process, or as tasks on a Dask cluster, see `buckets`). `batch` computes one batch.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import duckdb

from etf_assets.cluster.tasks import Cluster
from etf_assets.constants import FEATURE_COLUMNS, FEATURES_TABLE
from etf_assets.features import sql
from etf_assets.features.batch import StageFileWriter, compute_features, registered
from etf_assets.features.buckets import insert_buckets
from etf_assets.storage.disk_space import (
    FEATURES_STAGE_BYTES_PER_ROW,
    FEATURES_TABLE_BYTES_PER_ROW,
    SpaceNeed,
    require_space,
)
from etf_assets.storage.parquet_stage import (
    SymbolReplacement,
    largest_files_bytes,
    remove_pending_files,
)
from etf_assets.storage.session_settings import rows_in_any_order
from etf_assets.storage.warehouse_space import (
    CommittedButNotCheckpointedError,
    commit_or_explain,
    database_path,
    reusable_bytes,
)

log = logging.getLogger(__name__)

# Below this many rows the window SQL is fast enough and the kernel's fixed costs do not pay.
KERNEL_MIN_ROWS = 200_000
# Bump when the feature definition changes: every symbol is then recomputed once.
FEATURES_VERSION = 1
# Rows per batch, about 0.2 GB of Arrow; three batches are in memory at once (one computed, one
# inserted, one written to the stage). Larger batches were not faster at full scale.
BATCH_ROWS = 2_000_000


@dataclass(frozen=True)
class FeaturesReport:
    symbols_requested: int
    symbols_computed: int  # the others' prices had not changed since their last computation
    rows: int
    rows_with_features: int
    method: str
    seconds: float


class SecurityNameError(ValueError):
    """price_volume_table holds more than one security name for a symbol."""


def _batches(con: duckdb.DuckDBPyConnection, batch_rows: int) -> list[dict[str, str | None]]:
    """The stale symbols, each with its security name, in batches of about `batch_rows` rows; a
    symbol is never split.

    The first batch is an eighth of that: nothing overlaps its computation, so the sooner it is
    done, the sooner inserting and writing the stage keep both cores busy.
    """
    batches: list[dict[str, str | None]] = [{}]
    rows_in_batch = 0
    limit = batch_rows // 8
    for symbol, security_name, rows in con.execute(
        "SELECT symbol, security_name, rows FROM stale_symbols WHERE rows > 0 ORDER BY symbol"
    ).fetchall():
        if batches[-1] and rows_in_batch + rows > limit:
            batches.append({})
            rows_in_batch = 0
            limit = batch_rows
        batches[-1][symbol] = security_name
        rows_in_batch += rows
    return [batch for batch in batches if batch]


def _space_needs(
    con: duckdb.DuckDBPyConnection, stale_rows: int, stage_dir: Path
) -> list[SpaceNeed]:
    """What replacing the stale symbols' rows adds to the disk, from counts the run has anyway.

    The new rows go into new blocks of the warehouse (free blocks first), since the deleted ones
    are freed only once the transaction commits; stage 2 gets a new file per batch, and each old
    file that also holds symbols that are not recomputed is rewritten without the replaced rows
    (at most one file per replaced symbol that already had features).
    """
    database = database_path(con)
    if database is None:
        return []
    replaced, kept = con.execute(
        """SELECT count(*) FILTER (WHERE symbol IN (SELECT symbol FROM stale_symbols)),
                  count(*) FILTER (WHERE symbol NOT IN (SELECT symbol FROM stale_symbols))
           FROM features_state"""
    ).fetchone()
    rewritten = largest_files_bytes(stage_dir, replaced) if kept else 0
    return [
        SpaceNeed(
            database.parent,
            stale_rows * FEATURES_TABLE_BYTES_PER_ROW - reusable_bytes(con),
            f"{FEATURES_TABLE} in {database.name}",
        ),
        SpaceNeed(
            stage_dir, stale_rows * FEATURES_STAGE_BYTES_PER_ROW + rewritten, "Parquet stage 2"
        ),
    ]


def _plan(
    con: duckdb.DuckDBPyConnection,
    symbols: list[str],
    stage_dir: Path,
    method: str,
    kernel_min_rows: int,
    batch_rows: int,
    min_batches: int = 1,
) -> tuple[int, int, str, list[dict[str, str | None]]]:
    """Find the stale symbols, check the disk has room for their rows, choose the method and
    the batches (at least `min_batches` when there are as many symbols); return (stale
    symbols, their rows, method, batches)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE requested_symbols AS "
        "SELECT unnest($symbols::VARCHAR[]) AS symbol",
        {"symbols": symbols},
    )
    con.execute(sql.load("find_stale_symbols"), {"features_version": FEATURES_VERSION})
    several = con.execute(
        "SELECT symbol FROM stale_symbols WHERE security_names > 1 ORDER BY symbol LIMIT 5"
    ).fetchall()
    if several:
        raise SecurityNameError(
            "price_volume_table holds several security names for symbol(s) "
            f"{', '.join(row[0] for row in several)}; features need one per symbol"
        )
    stale, stale_rows = con.execute("SELECT count(*), sum(rows) FROM stale_symbols").fetchone()
    stale_rows = stale_rows or 0
    # Symbols dropped from the archive keep their features rows until a run removes them; only
    # symbols outside the run can be such, so a run over every symbol looks no further.
    outside = con.execute(
        """SELECT count(*) FROM features_state WHERE content_hash IS NOT NULL
           AND symbol NOT IN (SELECT symbol FROM requested_symbols)"""
    ).fetchone()[0]
    if outside and (orphans := con.execute(sql.load("add_orphan_symbols")).fetchone()[0]):
        log.info("removing the features of %d symbols that have no price rows any more", orphans)
    # Holding the warehouse's write lock, no other run is replacing stage files: pending files
    # there were left by a killed run.
    remove_pending_files(stage_dir)
    require_space(_space_needs(con, stale_rows, stage_dir))
    if method == "auto":
        method = "kernel" if stale_rows >= kernel_min_rows else "sql"
    if min_batches > 1:
        batch_rows = min(batch_rows, max(1, -(-stale_rows // min_batches)))
    batches = _batches(con, batch_rows)
    log.info(
        "%d of %d symbols changed since their features were computed: %s rows in %d batches",
        stale,
        len(symbols),
        f"{stale_rows:,}",
        len(batches),
    )
    return stale, stale_rows, method, batches


def write_features(
    con: duckdb.DuckDBPyConnection,
    symbols: list[str],
    stage_dir: Path,
    method: str = "auto",
    *,
    kernel_min_rows: int = KERNEL_MIN_ROWS,
    batch_rows: int = BATCH_ROWS,
    cluster: Cluster | None = None,
    prices_stage: Path | None = None,
) -> FeaturesReport:
    """Bring the rows of `symbols` in `features_table` and Parquet stage 2 up to date.

    Only symbols whose prices changed since their features were computed are recomputed; their
    rows are replaced, every other symbol's rows stay as they are. Batches of symbols bound the
    memory; each batch's stage file is written while the next batch is computed and inserted.
    Refuses before writing when the disk lacks room for the new rows (estimated from their
    count). The table changes in one transaction and the stage's files are swapped in only once
    it committed, so a failure leaves both as they were.

    Args:
        method: "sql", "kernel", or "auto": the kernel when at least `kernel_min_rows` rows are
            to be computed, else the window SQL.
        kernel_min_rows: where "auto" switches from the window SQL to the kernel.
        batch_rows: about how many rows each batch holds (one stage file per batch).
        cluster: where to compute the batches, each a task that reads Parquet stage 1 at
            `prices_stage` and writes its stage 2 file, which this process then inserts into
            the table; None computes them in this process.
    """
    if cluster is not None and prices_stage is None:
        raise ValueError("computing features on a cluster needs prices_stage (Parquet stage 1)")
    start = time.perf_counter()
    con.execute(sql.load("create_features_table"))
    con.execute(sql.load("create_features_state"))
    con.execute("BEGIN TRANSACTION")
    try:
        with SymbolReplacement(con, stage_dir, "stale_symbols") as stage:
            stale, stale_rows, method, batches = _plan(
                con,
                symbols,
                stage_dir,
                method,
                kernel_min_rows,
                batch_rows,
                cluster.min_tasks if cluster is not None else 1,
            )
            con.execute(
                f"DELETE FROM {FEATURES_TABLE} WHERE symbol IN (SELECT symbol FROM stale_symbols)"
            )
            if cluster is None:
                rows, with_features = _insert_and_stage(con, batches, method, stale_rows, stage)
            else:
                rows = stale_rows
                with_features = insert_buckets(con, cluster, batches, method, prices_stage, stage)
            stage.prepare()
            con.execute(sql.load("record_features_state"), {"features_version": FEATURES_VERSION})
            try:
                commit_or_explain(con, "the new features_table rows")
            except CommittedButNotCheckpointedError:
                stage.publish()  # the table holds the new rows: so must the stage
                raise
            stage.publish()
    except CommittedButNotCheckpointedError:
        raise
    except BaseException:
        with suppress(duckdb.Error):  # the database may have failed (a full disk)
            con.execute("ROLLBACK")
        raise
    seconds = time.perf_counter() - start
    log.info(
        "features of %d symbols, %d rows in %.1f s (%.0f rows/s, %s)",
        stale,
        rows,
        seconds,
        rows / seconds if seconds else 0,
        method,
    )
    return FeaturesReport(len(symbols), stale, rows, with_features, method, seconds)


def _insert_and_stage(
    con: duckdb.DuckDBPyConnection,
    batches: list[dict[str, str | None]],
    method: str,
    stale_rows: int,
    stage: SymbolReplacement,
) -> tuple[int, int]:
    """Compute, insert and stage every batch; return the rows and the rows with features."""
    rows = with_features = 0
    with (
        rows_in_any_order(con),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="features") as computer,
        StageFileWriter() as stage_files,  # closed once the writer's thread has finished
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage-2") as writer,
        con.cursor() as reader,
    ):
        # Three steps overlap: batch n+1 is computed (on a cursor of its own) while batch n is
        # inserted and batch n-1 is written to the stage.
        if batches:
            computed = computer.submit(compute_features, reader, batches[0], method)
        stage_write: Future | None = None
        try:
            for number in range(1, len(batches) + 1):
                batch = computed.result()
                if number < len(batches):
                    computed = computer.submit(compute_features, reader, batches[number], method)
                with registered(con, batch):
                    con.execute(sql.load("insert_feature_batch"))
                if stage_write is not None:
                    stage_write.result()  # one stage file in flight keeps memory bounded
                stage_write = writer.submit(stage_files.write, batch, stage.new_file())
                rows += batch.rows.num_rows
                with_features += batch.rows.num_rows - batch.rows[FEATURE_COLUMNS[0]].null_count
                log.info(
                    "features: batch %d of %d done, %s of %s rows",
                    number,
                    len(batches),
                    f"{rows:,}",
                    f"{stale_rows:,}",
                )
            if stage_write is not None:
                stage_write.result()
        except BaseException:
            # Before the cursor closes: a computation still running on it must end first.
            if batches:
                computed.cancel()
                with suppress(BaseException):
                    computed.result()
            if stage_write is not None:
                with suppress(BaseException):
                    stage_write.result()
            raise
    return rows, with_features
