-- Parquet stage 1 with the problem statement's column names and types.
SELECT
    symbol AS "Symbol",
    security_name AS "Security Name",
    CAST(date AS VARCHAR) AS "Date",
    open AS "Open",
    high AS "High",
    low AS "Low",
    close AS "Close",
    adj_close AS "Adj Close",
    volume AS "Volume"
FROM price_volume_table
