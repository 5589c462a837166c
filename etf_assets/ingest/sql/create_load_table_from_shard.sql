-- The load table of a cluster load, from the first shard whose task is done (insert_shard_rows.sql
-- adds the others' rows as their tasks end).
CREATE OR REPLACE TABLE price_volume_load AS
SELECT * FROM read_parquet($path);
