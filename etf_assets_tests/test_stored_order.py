"""The order checks that let the loader and the features skip a sort, on hand-made rows."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from etf_assets.storage.stored_order import files_with_unordered_dates, symbol_date_order

DAY0 = date(2020, 1, 1)


def stored(rows: list[tuple[int, int]]) -> duckdb.DuckDBPyConnection:
    """A table of (file_id, date) rows in the given order; dates are day numbers after DAY0."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (file_id INTEGER, date DATE)")
    for file_id, day in rows:
        con.execute("INSERT INTO t VALUES (?, ?)", [file_id, DAY0 + timedelta(day)])
    return con


def test_a_file_split_into_runs_in_date_order_is_ordered() -> None:
    con = stored([(1, 1), (1, 2), (2, 1), (2, 5), (1, 3), (1, 9), (2, 6)])
    assert files_with_unordered_dates(con, "t") == []


def test_duplicates_and_steps_back_are_found_within_and_across_runs() -> None:
    con = stored(
        [
            (1, 1), (1, 1),          # file 1: a date twice inside a run
            (2, 4), (2, 5),          # file 2: its next run starts on its last date
            (3, 7), (3, 2), (3, 8),  # file 3: a step back inside a run
            (2, 5), (2, 6),
            (4, 3), (4, 4),          # file 4: fine
            (5, 9),                  # file 5: its second run goes back in time
            (4, 5),
            (5, 1),
        ]
    )  # fmt: skip
    assert files_with_unordered_dates(con, "t") == [1, 2, 3, 5]


def test_an_empty_table_has_no_unordered_files() -> None:
    assert files_with_unordered_dates(stored([]), "t") == []


def arrays(numbers: list[int], days: list[int]) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    return (
        pa.chunked_array([numbers[:2], numbers[2:]], pa.int64()),
        pa.chunked_array([[DAY0 + timedelta(d) for d in days]], pa.date32()),
    )


def test_rows_already_in_symbol_then_date_order_need_no_permutation() -> None:
    permutation, lengths = symbol_date_order(*arrays([1, 1, 2, 2, 2], [1, 2, 1, 2, 3]))
    assert permutation is None
    assert lengths.tolist() == [2, 3]


def test_scattered_rows_are_ordered_by_symbol_number_then_date() -> None:
    numbers = [2, 1, 2, 1, 3, 2]
    days = [5, 2, 3, 1, 1, 4]
    permutation, lengths = symbol_date_order(*arrays(numbers, days))
    # By hand: 1 (days 1, 2 at rows 3, 1), then 2 (days 3, 4, 5 at rows 2, 5, 0), then 3.
    assert permutation.tolist() == [3, 1, 2, 5, 0, 4]
    assert lengths.tolist() == [2, 3, 1]


def test_a_later_symbol_stored_first_is_moved_behind() -> None:
    permutation, lengths = symbol_date_order(*arrays([2, 2, 1, 1, 1], [1, 2, 1, 2, 3]))
    assert permutation.tolist() == [2, 3, 4, 0, 1]
    assert lengths.tolist() == [3, 2]


def test_no_rows() -> None:
    permutation, lengths = symbol_date_order(
        pa.chunked_array([], pa.int64()), pa.chunked_array([], pa.date32())
    )
    assert permutation is None and len(lengths) == 0 and lengths.dtype == np.int64
