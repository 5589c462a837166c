-- stage_rows(files): the rows of Parquet stage files under the tables' names and types
-- (select_stage_columns.sql, reversed), any further columns (stage 2's features) as they are.
-- What a worker reads in place of the warehouse, and how a worker's file goes into a table.
CREATE OR REPLACE TEMP MACRO stage_rows(files) AS TABLE
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
    * EXCLUDE (
        "Symbol", "Security Name", "Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"
    )
FROM read_parquet(files);
