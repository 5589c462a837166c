-- rejected_rows of a cluster load: the rows and files the shards rejected (see
-- create_rejected_rows.sql), and the rejections found before parsing.
CREATE OR REPLACE TABLE rejected_rows AS
SELECT file, line_number, reason, content
FROM read_parquet($paths)
UNION ALL
SELECT file, line_number, reason, content
FROM other_rejections;
