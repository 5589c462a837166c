-- A worker's `price_volume_table`: the bucket's rows of Parquet stage 1, so that compute_features
-- runs on it as on the table.
CREATE OR REPLACE TEMP TABLE price_volume_table AS
SELECT * FROM stage_rows($files)
WHERE symbol IN (SELECT unnest($symbols::VARCHAR[]));
