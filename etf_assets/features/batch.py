"""The two 30-row features of one batch of symbols, and the batch's Parquet stage 2 file.

`sql/select_features.sql` is the definition (window SQL). DuckDB's windowed MEDIAN, a general
quantile over each frame, is the slow part of that SQL at full scale, so large runs use an exact
kernel instead: an integer running sum for the mean and bottleneck's double-heap `move_median`
(which updates a running median as the window slides) for the median, over each symbol's rows in
date order, then NULL for each symbol's first 29 rows (exactly the windows that would reach into
the previous symbol). Tests prove both give identical values; benchmarks/README.md has timings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import bottleneck
import duckdb
import numpy as np
import pyarrow as pa

from etf_assets.constants import FEATURE_COLUMNS, WINDOW_ROWS
from etf_assets.features import sql
from etf_assets.storage.parquet_stage import copy_stage_rows
from etf_assets.storage.stored_order import symbol_date_order


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


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, batch: FeatureBatch) -> Iterator[None]:
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


class StageFileWriter:
    """Writes batches to stage files, one after the other, on an in-memory DuckDB of its own
    (locally it runs beside the inserts).

    One database serves every file of a run: a new one per file started its threads and faulted
    in its memory afresh each time (benchmarks/README.md). Use it from one thread at a time;
    `close` (or the `with` block's end) frees it.
    """

    def __init__(self) -> None:
        self._con = duckdb.connect()

    def write(self, batch: FeatureBatch, path: Path) -> None:
        with registered(self._con, batch):
            copy_stage_rows(
                self._con,
                "feature_batch_rows",
                "feature_batch_symbols",
                "symbol_number",
                path,
                FEATURE_COLUMNS,
            )

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> StageFileWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_stage_file(batch: FeatureBatch, path: Path) -> None:
    """Write one batch to the stage file `path` (a cluster task writes one file)."""
    with StageFileWriter() as writer:
        writer.write(batch, path)
