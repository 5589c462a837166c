"""Order checks on rows as DuckDB returns them, so that data already in order needs no sort.

Each price file holds one symbol with its dates ascending. Checking that rows still are in that
order takes a few vectorised passes over two integer columns; sorting 28 million rows by
(symbol, date) takes far longer.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa


def files_with_unordered_dates(con: duckdb.DuckDBPyConnection, table: str) -> list[int]:
    """The `file_id`s of `table` whose dates do not strictly increase in the order rows are read.

    The parallel CSV reader may store one file's rows as several runs among other files' rows;
    dates must increase within each run and from each run to the next run of its file. A file
    that passes has no date twice; a file that fails may only be out of order.
    """
    stored = con.sql(f"SELECT file_id, date FROM {table}").to_arrow_table()
    files = stored.column(0).to_numpy()
    days = stored.column(1).cast(pa.int32()).to_numpy()
    if len(files) == 0:
        return []
    run_starts = _run_starts(files)
    run_ends = np.append(run_starts[1:], len(files)) - 1
    steps_back = np.flatnonzero(np.diff(days) <= 0) + 1
    unordered = set(files[steps_back[~np.isin(steps_back, run_starts)]].tolist())

    by_file = np.argsort(files[run_starts], kind="stable")  # keeps each file's runs in order
    run_files = files[run_starts][by_file]
    continues = run_files[1:] == run_files[:-1]
    goes_back = days[run_starts[by_file][1:]] <= days[run_ends[by_file][:-1]]
    unordered |= set(run_files[1:][continues & goes_back].tolist())
    return sorted(unordered)


def symbol_date_order(
    symbol_numbers: pa.ChunkedArray, dates: pa.ChunkedArray
) -> tuple[np.ndarray | None, np.ndarray]:
    """Order rows by symbol number, then date.

    Returns the permutation that does it, or None when the rows are in that order already, and
    the number of rows of each symbol in that order.
    """
    if len(symbol_numbers) == 0:
        return None, np.zeros(0, dtype=np.int64)
    numbers = symbol_numbers.to_numpy().astype(np.int64)
    days = dates.cast(pa.int32()).to_numpy().astype(np.int64)
    # One integer key per row: rows come in long ascending runs (pieces of files), which a stable
    # (tim)sort merges several times faster than a lexsort of the two columns.
    key = numbers * (days.max() - days.min() + 1) + (days - days.min())
    in_order = bool(np.all(np.diff(key) > 0))
    permutation = None if in_order else np.argsort(key, kind="stable")
    grouped = numbers if permutation is None else numbers[permutation]
    return permutation, np.diff(np.append(_run_starts(grouped), len(grouped))).astype(np.int64)


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal consecutive `values` starts (`values` is not empty)."""
    return np.concatenate(([0], np.flatnonzero(np.diff(values)) + 1))
