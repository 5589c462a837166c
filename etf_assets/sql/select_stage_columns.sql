-- Rows in the Parquet stages' layout (the problem statement's names and types). The table and
-- extra columns are filled in from fixed names by parquet_stage.stage_query, never from input.
SELECT
    symbol AS "Symbol",
    security_name AS "Security Name",
    CAST(date AS VARCHAR) AS "Date",
    open AS "Open",
    high AS "High",
    low AS "Low",
    close AS "Close",
    adj_close AS "Adj Close",
    volume AS "Volume"{extra_columns}
FROM {table}
