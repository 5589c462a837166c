-- The load table of a cluster load: every shard's rows, shard by shard, as the workers wrote them.
CREATE OR REPLACE TABLE price_volume_load AS
SELECT * FROM read_parquet($paths);
