-- A shard's load table rows, each file numbered as the run's process numbers it: the shard's files
-- are consecutive in the run's list, from position $first on, and the shard's scan numbers them
-- from 0.
SELECT * REPLACE (CAST(file_id + $first AS INTEGER) AS file_id)
FROM price_volume_load
