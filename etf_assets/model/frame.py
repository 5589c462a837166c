"""The training rows: the model rows of `features_table` with the features of each symbol's
previous trading day (the leakage-free variant) and the random-split flag, straight into numpy."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace

import duckdb
import numpy as np

from etf_assets.model import sql
from etf_assets.storage.stored_order import ascending_run_starts, group_runs

# The problem statement's random 80/20 split, seed 42.
RANDOM_SPLIT_SEED = 42
RANDOM_TEST_FRACTION = 0.2
LAG_FROM_STORAGE_ORDER = "storage order"
LAG_FROM_WINDOW = "window"
# Beyond this many stored runs per symbol, the lag comes from the window query.
MAX_RUNS_PER_SYMBOL = 4

_EPOCH = dt.date(1970, 1, 1)


def day_to_date(day: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=int(day))


@dataclass(frozen=True)
class TrainingFrame:
    """The model rows of `features_table` as equal-length columns, in no particular order.

    Attributes:
        day: date of the row, as days since 1970-01-01 (int32).
        features: `vol_moving_avg`, `adj_close_rolling_med` (float64, finite).
        lagged: the same two features of the symbol's previous row (NaN on its first row).
        volume: the target (float64).
        random_test: whether the row is in the test part of the random split.
        lag_source: how the lag was taken: "storage order" or "window" (see load_training_frame).
        random_split_seed, random_test_fraction: how `random_test` was drawn.
    """

    day: np.ndarray
    features: tuple[np.ndarray, np.ndarray]
    lagged: tuple[np.ndarray, np.ndarray]
    volume: np.ndarray
    random_test: np.ndarray
    lag_source: str = ""
    random_split_seed: int = RANDOM_SPLIT_SEED
    random_test_fraction: float = RANDOM_TEST_FRACTION

    @property
    def rows(self) -> int:
        return len(self.volume)


@dataclass(frozen=True)
class FeaturesProfile:
    """What one aggregate pass over `features_table` tells before loading it.

    Attributes:
        rows: rows in the table.
        snapshot_id: changes when any symbol, date, volume or feature does, not with row order.
        symbols_with_features: symbols with at least one row with both features.
        symbols_with_gaps: symbols with a row lacking features after their first row with them.
    """

    rows: int
    snapshot_id: str
    symbols_with_features: int
    symbols_with_gaps: int


def _fetch_columns(
    con: duckdb.DuckDBPyConnection, query: str, params: dict[str, object]
) -> dict[str, np.ndarray]:
    """The result of `query` as numpy columns (NULL doubles as NaN), through Arrow.

    `fetchnumpy` takes the GIL back for every chunk of rows it converts: beside another Python
    thread (`poly_model` opens the MLflow store in one meanwhile) each chunk then waits for that
    thread's turn, and the load takes many times longer. The Arrow fetch runs without the GIL.
    """
    table = con.sql(query, params=params).to_arrow_table()
    columns = {}
    for name in table.column_names:
        columns[name] = table.column(name).to_numpy()
        table = table.drop_columns([name])  # one column in both forms at a time
    return columns


def _no_progress_printing(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB prints a progress bar for long statements, into the run's logs: not on `con`
    (progress is still tracked for whoever polls it)."""
    con.execute("SET enable_progress_bar_print = false")


def profile_features(con: duckdb.DuckDBPyConnection) -> FeaturesProfile:
    _no_progress_printing(con)
    # fetchall, not fetchone: a result left unfinished refuses the connection's next `sql()`.
    [(rows, checksum, with_features, with_gaps)] = con.execute(
        sql.load("select_features_profile")
    ).fetchall()
    snapshot_id = hashlib.sha256(f"{rows}:{checksum}".encode()).hexdigest()[:16]
    return FeaturesProfile(int(rows), snapshot_id, int(with_features), int(with_gaps))


def load_training_frame(
    con: duckdb.DuckDBPyConnection,
    profile: FeaturesProfile | None = None,
    seed: int = RANDOM_SPLIT_SEED,
    test_fraction: float = RANDOM_TEST_FRACTION,
) -> TrainingFrame:
    """Read the rows where both features are finite, with the features of the symbol's previous
    row (the leakage-free variant) and the random-split flag, straight into numpy.

    `features_table` is written in batches of whole symbols, and rows without features are only
    each symbol's first ones. DuckDB stores each symbol's rows as one run in date order or as a
    few. Then one scan in storage order (no sort) gives the lag: the previous row, or for the
    first row of a run the last row of the symbol's run before it. That is checked (`profile` and
    every loaded row); when it does not hold, the lag comes from a window query (`lag() OVER
    (PARTITION BY symbol ORDER BY date)`), which sorts all rows. Both give the same frame.
    """
    _no_progress_printing(con)
    profile = profile or profile_features(con)
    params = {"seed": seed, "test_fraction": test_fraction}
    if profile.symbols_with_gaps == 0:
        stored = _fetch_columns(con, sql.load("select_model_rows"), params)
        frame = _lag_in_storage_order(stored, profile.symbols_with_features)
        if frame is not None:
            return replace(frame, random_split_seed=seed, random_test_fraction=test_fraction)
        del stored
    result = _fetch_columns(con, sql.load("select_training_rows"), params)
    return TrainingFrame(
        day=result["day"],
        features=(result["vol_moving_avg"], result["adj_close_rolling_med"]),
        lagged=(result["lag_vol_moving_avg"], result["lag_adj_close_rolling_med"]),
        volume=result["volume"],
        random_test=result["random_test"].astype(bool, copy=False),
        lag_source=LAG_FROM_WINDOW,
        random_split_seed=seed,
        random_test_fraction=test_fraction,
    )


def _lag_in_storage_order(rows: dict[str, np.ndarray], symbols: int) -> TrainingFrame | None:
    """The frame from the rows with features in storage order, or None unless the rows of each
    of the `symbols` are stored as a few runs in ascending date order whose date ranges do not
    overlap.

    With no row lacking features after a symbol's first row with them (the caller checks), the
    previous row of a symbol is its previous trading day: the row before within a run, or the last
    row of the symbol's run of earlier dates; the symbol's first row has none with features (NaN).
    """
    symbol, day = rows["symbol_hash"], rows["day"]
    if len(symbol) == 0:
        return None
    starts = ascending_run_starts(symbol, day)
    # DuckDB's parallel writers may store a symbol as a few runs; many more runs than symbols
    # means a table in another order, which the window query sorts faster than numpy.
    if len(starts) > MAX_RUNS_PER_SYMBOL * symbols:
        return None
    runs = group_runs(symbol, day, starts, "first day")
    # As many distinct hashes as symbols (no hash collision), each symbol's runs in sequence.
    if int(np.count_nonzero(~runs.continues)) + 1 != symbols or runs.goes_back.any():
        return None
    row_before_run = runs.row_before()
    has_row_before = row_before_run >= 0

    def previous(column: np.ndarray) -> np.ndarray:
        lagged = np.empty_like(column)
        lagged[1:] = column[:-1]
        lagged[starts] = np.nan
        lagged[starts[has_row_before]] = column[row_before_run[has_row_before]]
        return lagged

    vma, acrm, volume = rows["vol_moving_avg"], rows["adj_close_rolling_med"], rows["volume"]
    columns = [day, vma, acrm, previous(vma), previous(acrm), volume, rows["random_test"]]
    if not np.isfinite(volume).all():  # a row without volume: its features still lag
        columns = [np.compress(np.isfinite(volume), c) for c in columns]
    day, vma, acrm, lag1, lag2, volume, random_test = columns
    return TrainingFrame(
        day=day,
        features=(vma, acrm),
        lagged=(lag1, lag2),
        volume=volume,
        random_test=random_test.astype(bool, copy=False),
        lag_source=LAG_FROM_STORAGE_ORDER,
    )
