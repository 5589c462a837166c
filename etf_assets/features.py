"""The two 30-row features, computed in DuckDB and written to `features_table` and stage 2.

`sql/select_features.sql` is the definition (window SQL). DuckDB's windowed MEDIAN takes about
16 s at full scale, so large batches use an exact kernel instead: an integer running sum for the
mean and bottleneck's double-heap `move_median` for the median, over the (symbol, date)-sorted
column, then NULL for each symbol's first 29 rows (exactly the windows that would reach into the
previous symbol). Tests prove both give identical values.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import bottleneck
import duckdb
import numpy as np
import pyarrow as pa

from etf_assets import sql
from etf_assets.constants import FEATURE_COLUMNS, FEATURES_TABLE, WINDOW_ROWS
from etf_assets.parquet_stage import replace_symbols, stage_query
from etf_assets.progress import logged_progress

log = logging.getLogger(__name__)

# Below this many rows the window SQL is fast enough and the kernel's fixed costs do not pay.
KERNEL_MIN_ROWS = 200_000
# Bump when the feature definition changes: every symbol is then recomputed once.
FEATURES_VERSION = 1


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


def _stage_with_kernel(con: duckdb.DuckDBPyConnection) -> None:
    lengths = np.array(
        [
            row[0]
            for row in con.execute(
                "SELECT count(*) FROM feature_input GROUP BY symbol ORDER BY symbol"
            ).fetchall()
        ],
        dtype=np.int64,
    )
    columns = con.sql("SELECT volume, adj_close FROM feature_input").fetchnumpy()
    moving_avg, rolling_med = rolling_features(columns["volume"], columns["adj_close"], lengths)
    computed = pa.table(
        {
            FEATURE_COLUMNS[0]: pa.array(moving_avg, from_pandas=True),
            FEATURE_COLUMNS[1]: pa.array(rolling_med, from_pandas=True),
        }
    )
    con.register("computed_features", computed)
    # feature_input was written in (symbol, date) order, so its scan lines up row by row.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE new_features AS
           SELECT i.*, c.vol_moving_avg, c.adj_close_rolling_med
           FROM feature_input AS i POSITIONAL JOIN computed_features AS c"""
    )
    con.unregister("computed_features")


def _stage_with_sql(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE new_features AS {sql.load('select_features')}")


def stage_features(con: duckdb.DuckDBPyConnection, symbols: list[str], method: str = "auto") -> str:
    """Compute the features of the stale ones among `symbols` into the temp table `new_features`
    and return the method used: "sql", "kernel", or for "auto" the kernel from KERNEL_MIN_ROWS on.
    """
    con.execute(
        "CREATE OR REPLACE TEMP TABLE requested_symbols AS "
        "SELECT unnest($symbols::VARCHAR[]) AS symbol",
        {"symbols": symbols},
    )
    con.execute(sql.load("create_features_state"))
    con.execute(sql.load("find_stale_symbols"), {"features_version": FEATURES_VERSION})
    with logged_progress(
        con, log, "sorting the rows of the changed symbols", len(symbols), "symbols"
    ):
        con.execute(sql.load("stage_feature_input"))
    if method == "auto":
        rows = con.execute("SELECT count(*) FROM feature_input").fetchone()[0]
        method = "kernel" if rows >= KERNEL_MIN_ROWS else "sql"
    (_stage_with_kernel if method == "kernel" else _stage_with_sql)(con)
    return method


def write_features(
    con: duckdb.DuckDBPyConnection, symbols: list[str], stage_dir: Path, method: str = "auto"
) -> FeaturesReport:
    """Bring the rows of `symbols` in `features_table` and Parquet stage 2 up to date.

    Only symbols whose prices changed since their features were computed are recomputed; their
    rows are replaced, every other symbol's rows stay as they are.
    """
    start = time.perf_counter()
    con.execute(sql.load("create_features_table"))
    used = stage_features(con, symbols, method)
    stale = con.execute("SELECT count(*) FROM stale_symbols").fetchone()[0]
    log.info("%d of %d symbols changed since their features were computed", stale, len(symbols))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"DELETE FROM {FEATURES_TABLE} WHERE symbol IN (SELECT symbol FROM stale_symbols)"
        )
        with logged_progress(con, log, "writing features_table", stale, "symbols"):
            con.execute(f"INSERT INTO {FEATURES_TABLE} SELECT * FROM new_features")
        if stale:
            replace_symbols(
                con, stage_query("new_features", FEATURE_COLUMNS), stage_dir, "stale_symbols"
            )
        con.execute(sql.load("record_features_state"), {"features_version": FEATURES_VERSION})
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    rows, with_features = con.execute(
        "SELECT count(*), count(vol_moving_avg) FROM new_features"
    ).fetchone()
    seconds = time.perf_counter() - start
    log.info(
        "features of %d symbols, %d rows in %.1f s (%.0f rows/s, %s)",
        stale,
        rows,
        seconds,
        rows / seconds if seconds else 0,
        used,
    )
    return FeaturesReport(len(symbols), stale, rows, with_features, used, seconds)
