"""DuckDB session settings that a step changes for its own statements only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import duckdb


@contextmanager
def rows_in_any_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Let DuckDB write rows in any order, which it does in parallel and without buffering.

    For an INSERT into a table of the warehouse it makes DuckDB compress and write every row group
    as it fills: keeping the order, the last row groups of each insert stay in memory until the
    next checkpoint, and closing the connection (which Dagster's resource does after every
    materialization) then pays for compressing them.
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
