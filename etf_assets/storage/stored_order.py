"""Order checks on rows as DuckDB returns them, so that data already in order needs no sort.

Each price file holds one symbol with its dates ascending, and `features_table` is written symbol
by symbol in date order. DuckDB's parallel readers and writers may store such rows as a few runs
among other keys' runs. Checking that rows still are in order takes a few vectorised passes over
two integer columns and a sort of the runs; sorting all rows by (key, date) takes far longer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa


def ascending_run_starts(keys: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Where each run of rows starts (`keys` is not empty): a run is a longest stretch of rows of
    one key whose days strictly increase."""
    breaks = (keys[1:] != keys[:-1]) | (days[1:] <= days[:-1])
    return np.concatenate([[0], np.flatnonzero(breaks) + 1])


@dataclass(frozen=True)
class KeyRuns:
    """The runs of rows (see `ascending_run_starts`) grouped by key.

    Attributes:
        starts, ends: the first and the last row of each run, runs in storage order.
        order: the runs key by key, each key's runs in storage order or by first day.
        continues: whether `order[i + 1]` is a run of the same key as `order[i]`.
        goes_back: whether `order[i + 1]` continues the key and starts on or before the last
            day of `order[i]`; when it never does, each key's runs chain into one ascending run.
    """

    starts: np.ndarray
    ends: np.ndarray
    order: np.ndarray
    continues: np.ndarray
    goes_back: np.ndarray

    def row_before(self) -> np.ndarray:
        """For each run, the last row of the run before it of its key, or -1 for a key's first."""
        before = np.full(len(self.starts), -1)
        before[self.order[1:][self.continues]] = self.ends[self.order[:-1][self.continues]]
        return before


def group_runs(
    keys: np.ndarray,
    days: np.ndarray,
    starts: np.ndarray,
    within_key: Literal["storage order", "first day"],
) -> KeyRuns:
    """The runs that begin at `starts` (from `ascending_run_starts`), key by key; a key's runs
    in the order they are stored or by their first day."""
    ends = np.append(starts[1:], len(keys)) - 1
    run_keys = keys[starts]
    order = np.lexsort((starts if within_key == "storage order" else days[starts], run_keys))
    ordered_keys = run_keys[order]
    continues = ordered_keys[1:] == ordered_keys[:-1]
    goes_back = continues & (days[starts[order[1:]]] <= days[ends[order[:-1]]])
    return KeyRuns(starts, ends, order, continues, goes_back)


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
    runs = group_runs(files, days, ascending_run_starts(files, days), "storage order")
    return np.unique(files[runs.starts[runs.order[1:][runs.goes_back]]]).tolist()


def count_repeated_keys(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """How many (symbol, date) keys of `table` occur more than once.

    Grouping every row by its key answers exactly, and is the slow way. The loader stores each
    file's rows in date order, so the rows as read are runs of one symbol with rising dates; when
    each symbol's runs chain by date without overlap, no key repeats, which a pass over two
    integer columns shows. Rows in any other order, or with a NULL key, are grouped.
    """
    if _keys_chain_by_date(con, table):
        return 0
    return con.execute(
        f"SELECT count(*) FROM (SELECT symbol, date FROM {table} GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone()[0]


def _keys_chain_by_date(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    null_keys, symbols, symbol_hashes = con.execute(
        f"""SELECT count(*) FILTER (WHERE symbol IS NULL OR date IS NULL),
                   count(DISTINCT symbol), count(DISTINCT hash(symbol)) FROM {table}"""
    ).fetchall()[0]
    # Runs are told apart by the symbol's hash: two symbols that share one would look like one.
    if null_keys or symbols != symbol_hashes:
        return False
    stored = con.sql(f"SELECT hash(symbol), date FROM {table}").to_arrow_table()
    if stored.num_rows == 0:
        return True
    keys = stored.column(0).to_numpy()
    days = stored.column(1).cast(pa.int32()).to_numpy()
    runs = group_runs(keys, days, ascending_run_starts(keys, days), "first day")
    return not runs.goes_back.any()


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
    # (tim)sort merges faster than a lexsort of the two columns sorts them.
    key = numbers * (days.max() - days.min() + 1) + (days - days.min())
    in_order = bool(np.all(np.diff(key) > 0))
    permutation = None if in_order else np.argsort(key, kind="stable")
    grouped = numbers if permutation is None else numbers[permutation]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(grouped)) + 1))
    return permutation, np.diff(np.append(starts, len(grouped))).astype(np.int64)
