"""The warehouse tables' columns as the Dagster UI shows them, with what each column means.

Definition metadata (`dagster/column_schema`), so the catalog shows it before any run; a test
holds each schema equal to the real table's `DESCRIBE`.
"""

import dagster as dg


def _columns(*columns: tuple[str, str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, type_, description=text) for name, type_, text in columns]
    )


_PRICES = (
    ("symbol", "VARCHAR", "NASDAQ Symbol: the price file's name without .csv"),
    (
        "security_name",
        "VARCHAR",
        "from symbols_valid_meta.csv; empty for a file without a meta row",
    ),
    ("date", "DATE", "trading day; one row per symbol and date"),
    ("open", "DOUBLE", "opening price (0.0 in early years of some files: a real value)"),
    ("high", "DOUBLE", "highest price of the day"),
    ("low", "DOUBLE", "lowest price of the day"),
    ("close", "DOUBLE", "closing price"),
    ("adj_close", "DOUBLE", "closing price adjusted for splits and dividends"),
    ("volume", "BIGINT", "shares traded that day (963000.0 in a file loads as 963000)"),
)

PRICE_VOLUME_SCHEMA = _columns(*_PRICES)

FEATURES_SCHEMA = _columns(
    *_PRICES,
    (
        "vol_moving_avg",
        "DOUBLE",
        "mean of volume over the symbol's 30 most recent rows, this one included; NULL for "
        "its first 29 rows",
    ),
    (
        "adj_close_rolling_med",
        "DOUBLE",
        "median of adj_close over the same 30 rows (mean of the 15th and 16th values); NULL "
        "for the first 29 rows",
    ),
)

SYMBOL_SCHEMA = _columns(
    ("symbol", "VARCHAR", "NASDAQ Symbol, unique; the name of the symbol's price file"),
    ("listing_symbol", "VARCHAR", "the meta file's Symbol column (not unique: UTX and UTX#)"),
    ("security_name", "VARCHAR", "the company or fund"),
    ("is_etf", "BOOLEAN", "ETF = Y"),
    ("nasdaq_traded", "BOOLEAN", "Nasdaq Traded = Y"),
    ("listing_exchange", "VARCHAR", "exchange code of the listing"),
    ("market_category", "VARCHAR", "NASDAQ market tier; empty for other exchanges"),
    ("round_lot_size", "DOUBLE", "shares in a round lot"),
    ("test_issue", "BOOLEAN", "Test Issue = Y"),
    ("financial_status", "VARCHAR", "NASDAQ financial status code"),
    ("cqs_symbol", "VARCHAR", "symbol in the Consolidated Quotation System"),
    ("next_shares", "BOOLEAN", "NextShares = Y"),
    ("price_rows", "BIGINT", "rows loaded into price_volume_table (0: no file, or no rows)"),
    ("first_date", "DATE", "first trading day loaded"),
    ("last_date", "DATE", "last trading day loaded"),
)
