-- features_table over one shard of Parquet stage 2 (the relation stage_2_shard): the table's
-- names and types, so that the training loader reads the shard as it reads the warehouse and the
-- random split hashes the same values (symbol VARCHAR, date DATE).
CREATE OR REPLACE TEMP VIEW features_table AS
SELECT
    "Symbol" AS symbol,
    "Security Name" AS security_name,
    CAST("Date" AS DATE) AS date,
    "Open" AS open,
    "High" AS high,
    "Low" AS low,
    "Close" AS close,
    "Adj Close" AS adj_close,
    "Volume" AS volume,
    vol_moving_avg,
    adj_close_rolling_med
FROM stage_2_shard
