"""The two 30-row features of the stale symbols, written to `features_table` and stage 2.

`sql/select_features.sql` is the definition (window SQL). DuckDB's windowed MEDIAN, a general
quantile over each frame, is the slow part of that SQL at full scale, so large runs use an exact
kernel instead: an integer running sum for the mean and bottleneck's double-heap `move_median`
(which updates a running median as the window slides) for the median, over each symbol's rows in
date order, then NULL for each symbol's first 29 rows (exactly the windows that would reach into
the previous symbol). Tests prove both give identical values; benchmarks/README.md has timings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import bottleneck
import duckdb
import numpy as np
import pyarrow as pa

from etf_assets.cluster.tasks import Cluster
from etf_assets.constants import FEATURE_COLUMNS, FEATURES_TABLE, WINDOW_ROWS
from etf_assets.features import sql
from etf_assets.storage.disk_space import (
    FEATURES_STAGE_BYTES_PER_ROW,
    FEATURES_TABLE_BYTES_PER_ROW,
    SpaceNeed,
    require_space,
)
from etf_assets.storage.parquet_stage import (
    SymbolReplacement,
    copy_stage_rows,
    largest_files_bytes,
    remove_pending_files,
)
from etf_assets.storage.session_settings import rows_in_any_order
from etf_assets.storage.stored_order import symbol_date_order
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


def rolling_features(
    volume: np.ndarray, adj_close: np.ndarray, symbol_lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean of `volume` and median of `adj_close` over 30 rows, NaN where a symbol has
    fewer than 30 rows so far.

    Args:
        volume: int64 volumes of all rows, sorted by (symbol, date).
        adj_close: float64 adjusted closes in the same order.
        symbol_lengths: the number of rows of each symbol, in the same order.
    """
    n = len(volume)
    moving_avg = np.full(n, np.nan)
    if n >= WINDOW_ROWS:
        # An exact integer window sum, divided once: the same value DuckDB's AVG(BIGINT) gives.
        running = np.concatenate(([0], np.cumsum(volume, dtype=np.int64)))
        moving_avg[WINDOW_ROWS - 1 :] = (
            running[WINDOW_ROWS:] - running[:-WINDOW_ROWS]
        ) / WINDOW_ROWS
    rolling_med = bottleneck.move_median(adj_close.astype(np.float64, copy=False), WINDOW_ROWS)
    starts = np.repeat(np.cumsum(symbol_lengths) - symbol_lengths, symbol_lengths)
    too_early = np.arange(n) - starts < WINDOW_ROWS - 1
    moving_avg[too_early] = np.nan
    rolling_med[too_early] = np.nan
    return moving_avg, rolling_med


@dataclass(frozen=True)
class FeatureBatch:
    """The features of a batch of symbols: `rows` carry a `symbol_number` where the tables have
    `symbol` and `security_name`; `symbols` holds (symbol, security_name, symbol_number).

    The number saves fetching two strings for every row and gives an integer to sort and join by.
    """

    symbols: pa.Table
    rows: pa.Table


class SecurityNameError(ValueError):
    """price_volume_table holds more than one security name for a symbol."""


def compute_features(
    con: duckdb.DuckDBPyConnection, symbols: dict[str, str | None], method: str = "kernel"
) -> FeatureBatch:
    """The price rows of `symbols` (each with its security name) with both features, each row
    with its symbol's number in the batch in place of its symbol and security name.

    `method` is "sql" (the definition, `sql/select_features.sql`) or "kernel": the same values,
    computed in numpy over the rows in (symbol, date) order. The kernel returns rows in the order
    DuckDB returns them and sorts only the two input columns, and only when that order is not
    (symbol, date) already.
    """
    numbered = pa.table(
        {
            "symbol": pa.array(list(symbols), pa.string()),
            "security_name": pa.array(list(symbols.values()), pa.string()),
            "symbol_number": pa.array(range(1, len(symbols) + 1), pa.int32()),
        }
    )
    con.register("batch_symbols", numbered)
    if method == "sql":
        return FeatureBatch(numbered, con.sql(sql.load("select_features")).to_arrow_table())
    prices = con.sql(sql.load("select_batch_prices")).to_arrow_table()
    permutation, lengths = symbol_date_order(prices["symbol_number"], prices["date"])
    volume, adj_close = prices["volume"].to_numpy(), prices["adj_close"].to_numpy()
    if permutation is None:
        moving_avg, rolling_med = rolling_features(volume, adj_close, lengths)
    else:  # compute in (symbol, date) order, hand the values back in stored order
        moving_avg, rolling_med = np.empty(len(volume)), np.empty(len(volume))
        moving_avg[permutation], rolling_med[permutation] = rolling_features(
            volume[permutation], adj_close[permutation], lengths
        )
    rows = prices.append_column(
        FEATURE_COLUMNS[0], pa.array(moving_avg, from_pandas=True)
    ).append_column(FEATURE_COLUMNS[1], pa.array(rolling_med, from_pandas=True))
    return FeatureBatch(numbered, rows)


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


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, batch: FeatureBatch) -> Iterator[None]:
    """`batch` as the views `feature_batch_rows` and `feature_batch_symbols` of `con`."""
    con.register("feature_batch_rows", batch.rows)
    con.register("feature_batch_symbols", batch.symbols)
    try:
        yield
    finally:
        # An aborted transaction refuses even this until rolled back: keep the error it follows.
        with suppress(duckdb.TransactionException):
            con.unregister("feature_batch_rows")
            con.unregister("feature_batch_symbols")


def write_stage_file(batch: FeatureBatch, path: Path) -> None:
    """Write one batch to the stage file `path`, on a connection of its own (locally it runs
    beside the inserts)."""
    with duckdb.connect() as con, _registered(con, batch):
        copy_stage_rows(
            con,
            "feature_batch_rows",
            "feature_batch_symbols",
            "symbol_number",
            path,
            FEATURE_COLUMNS,
        )


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
                # Imported here: buckets runs this module's compute_features on the workers.
                from etf_assets.features.buckets import insert_buckets

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
                with _registered(con, batch):
                    con.execute(sql.load("insert_feature_batch"))
                if stage_write is not None:
                    stage_write.result()  # one stage file in flight keeps memory bounded
                stage_write = writer.submit(write_stage_file, batch, stage.new_file())
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
