"""The order checks that let the loader, the features and the training lag skip a sort, on
hand-made rows."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from etf_assets.storage.stored_order import (
    _keys_chain_by_date,
    ascending_run_starts,
    count_repeated_keys,
    files_with_unordered_dates,
    group_runs,
    symbol_date_order,
)

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


def test_runs_chain_by_first_day_in_any_stored_order_but_not_in_storage_order() -> None:
    keys = np.array([7, 7, 9, 7, 7, 9, 9])
    days = np.array([5, 6, 1, 1, 2, 2, 3])
    starts = ascending_run_starts(keys, days)
    # Runs: key 7 days 5-6 (rows 0-1), key 9 day 1 (row 2), key 7 days 1-2 (3-4), key 9 days 2-3.
    assert starts.tolist() == [0, 2, 3, 5]
    by_day = group_runs(keys, days, starts, "first day")
    assert not by_day.goes_back.any()
    # Key 7's run of days 5-6 follows its run of days 1-2, which ends at row 4; key 9's second
    # run follows row 2.
    assert by_day.row_before().tolist() == [4, -1, -1, 2]
    stored = group_runs(keys, days, starts, "storage order")
    # Key 7's second stored run goes back to day 1; key 9's goes on from day 1 to day 2.
    assert stored.order.tolist() == [0, 2, 1, 3]
    assert stored.continues.tolist() == [True, False, True]
    assert stored.goes_back.tolist() == [True, False, False]


def test_a_day_twice_breaks_the_chain_in_either_order() -> None:
    keys, days = np.array([1, 1, 2]), np.array([3, 3, 4])
    starts = ascending_run_starts(keys, days)
    assert starts.tolist() == [0, 1, 2]
    for within_key in ("first day", "storage order"):
        assert group_runs(keys, days, starts, within_key).goes_back.tolist() == [True, False]


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


def prices(rows: list[tuple[str, int | None]]) -> duckdb.DuckDBPyConnection:
    """A table of (symbol, date) rows in the given order; dates are day numbers after DAY0."""
    con = duckdb.connect()
    con.execute("CREATE TABLE prices (symbol VARCHAR, date DATE)")
    for symbol, day in rows:
        con.execute(
            "INSERT INTO prices VALUES (?, ?)",
            [symbol, None if day is None else DAY0 + timedelta(day)],
        )
    return con


def repeated_keys_by_pandas(rows: list[tuple[str, int | None]]) -> int:
    keys = pd.DataFrame(rows, columns=["symbol", "day"])
    return int(keys[keys.duplicated(keep=False)].drop_duplicates().shape[0])


REPEATED_KEY_CASES = {
    "runs interleaved, dates chain": [("A", 1), ("A", 2), ("B", 1), ("A", 3), ("B", 2)],
    "a later run stored first": [("A", 5), ("A", 6), ("B", 1), ("A", 1), ("A", 2)],
    "a day twice inside a run": [("A", 1), ("A", 1), ("A", 2), ("B", 1)],
    "a day twice across runs": [("A", 1), ("A", 2), ("B", 1), ("A", 2), ("A", 3)],
    "overlapping runs, no day twice": [("A", 1), ("A", 3), ("B", 1), ("A", 2), ("A", 4)],
    "two symbols, several repeats": [("A", 1), ("B", 1), ("A", 1), ("B", 1), ("B", 1)],
    "NULL dates": [("A", None), ("A", None), ("A", 1)],
    "no rows": [],
}


@pytest.mark.parametrize("rows", REPEATED_KEY_CASES.values(), ids=REPEATED_KEY_CASES.keys())
def test_repeated_keys_are_counted_as_grouping_counts_them(rows) -> None:
    assert count_repeated_keys(prices(rows), "prices") == repeated_keys_by_pandas(rows)


def test_only_runs_that_chain_by_date_skip_the_grouping() -> None:
    shown = [REPEATED_KEY_CASES[name] for name in ("runs interleaved, dates chain", "no rows")]
    shown.append(REPEATED_KEY_CASES["a later run stored first"])
    assert all(_keys_chain_by_date(prices(rows), "prices") for rows in shown)
    grouped = ["a day twice across runs", "overlapping runs, no day twice", "NULL dates"]
    assert not any(_keys_chain_by_date(prices(REPEATED_KEY_CASES[n]), "prices") for n in grouped)
