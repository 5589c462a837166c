-- One bucket's stage 2 file into features_table: the stage's names and text columns back to the
-- table's (stage_symbols and stage_dates of storage/sql/create_stage_lookups.sql, reversed).
INSERT INTO features_table BY NAME
SELECT
    CAST("Symbol" AS VARCHAR) AS symbol,
    CAST("Security Name" AS VARCHAR) AS security_name,
    CAST("Date" AS DATE) AS date,
    "Open" AS open,
    "High" AS high,
    "Low" AS low,
    "Close" AS close,
    "Adj Close" AS adj_close,
    "Volume" AS volume,
    vol_moving_avg,
    adj_close_rolling_med
FROM read_parquet($path);
