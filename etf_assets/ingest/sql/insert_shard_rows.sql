-- One more shard's rows into the load table of a cluster load.
INSERT INTO price_volume_load
SELECT * FROM read_parquet($path);
