-- A worker's `price_volume_table`: the bucket's rows of Parquet stage 1 under the table's names and
-- types (ingest/sql/scan_price_files.sql), so that compute_features runs on it as on the table.
CREATE OR REPLACE TEMP TABLE price_volume_table AS
SELECT
    CAST("Symbol" AS VARCHAR) AS symbol,
    CAST("Security Name" AS VARCHAR) AS security_name,
    CAST("Date" AS DATE) AS date,
    "Open" AS open,
    "High" AS high,
    "Low" AS low,
    "Close" AS close,
    "Adj Close" AS adj_close,
    "Volume" AS volume
FROM read_parquet($files)
WHERE "Symbol" IN (SELECT unnest($symbols::VARCHAR[]));
