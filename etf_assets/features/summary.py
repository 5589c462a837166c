"""What each symbol's partition of `features_table` holds, for that partition's own metadata."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from etf_assets.features import sql


@dataclass(frozen=True)
class SymbolSummary:
    rows: int
    first_date: dt.date | None
    last_date: dt.date | None
    rows_with_features: int
    last_vol_moving_avg: float | None
    last_adj_close_rolling_med: float | None


def symbol_summaries(
    con: duckdb.DuckDBPyConnection, symbols: list[str]
) -> dict[str, SymbolSummary]:
    """Every symbol of `symbols`, with zero rows where the table has none of it.

    Reads the `requested_symbols` table that `write_features` leaves on the connection.
    """
    found = {
        row[0]: SymbolSummary(*row[1:])
        for row in con.execute(sql.load("select_symbol_summaries")).fetchall()
    }
    empty = SymbolSummary(0, None, None, 0, None, None)
    return {symbol: found.get(symbol, empty) for symbol in symbols}
