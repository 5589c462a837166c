-- The price files of this load with their symbol and, when the meta file names it, security name.
CREATE OR REPLACE TEMP TABLE price_files AS
WITH listed AS (
    SELECT
        unnest(range(len($symbol))) AS file_id,
        unnest($symbol::VARCHAR[]) AS symbol,
        unnest($archive_path::VARCHAR[]) AS archive_path,
        unnest($path::VARCHAR[]) AS path
)
SELECT listed.*, m.security_name
FROM listed
LEFT JOIN symbols_meta AS m USING (symbol);
