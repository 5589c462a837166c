"""DuckDB session settings that a step changes for its own statements only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import duckdb


@contextmanager
def rows_in_any_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Let DuckDB write rows in any order, which it does in parallel and without buffering.

    For a Parquet file this makes the write about 15% faster. For an INSERT into a table of the
    warehouse it makes DuckDB compress and write every row group as it fills: keeping the order,
    the last row groups of each insert stayed in memory until the next checkpoint, which then
    compressed them (2.4-2.5 s of closing the connection after a full-scale features run).
    """
    before = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    con.execute("SET SESSION preserve_insertion_order = false")
    try:
        yield
    finally:
        # After a failed statement the open transaction refuses every statement until rolled
        # back; the SET must not replace the error that got us here.
        with suppress(duckdb.TransactionException):
            con.execute(f"SET SESSION preserve_insertion_order = {str(before).lower()}")
