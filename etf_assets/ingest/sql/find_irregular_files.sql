-- Files the typed scan cannot load exactly: files with fewer rows than lines (the reader skipped
-- some: blank rows, missing or malformed values, empty lines), volumes that are not whole or are
-- negative, non-finite numbers, and $unordered_files (dates not strictly increasing: possibly
-- duplicates). $data_lines holds each file's lines after the header, in file_id order. They are
-- reloaded line by line.
CREATE OR REPLACE TEMP TABLE irregular_files AS
WITH file_lines AS (
    SELECT
        unnest(range(len($data_lines::BIGINT[]))) AS file_id,
        unnest($data_lines::BIGINT[]) AS data_lines
)
SELECT l.file_id
FROM file_lines AS l
LEFT JOIN load_profile AS p USING (file_id)
WHERE coalesce(p.rows, 0) <> l.data_lines
UNION
SELECT file_id
FROM load_profile
WHERE whole_volumes <> rows OR min_volume < 0 OR NOT all_finite
UNION
SELECT unnest($unordered_files::INTEGER[]);
