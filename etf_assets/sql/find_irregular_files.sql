-- Files the typed scan cannot load exactly: reader rejects (blank rows and missing values among
-- them), volumes that are not whole or are negative, non-finite numbers, and $unordered_files
-- (dates not strictly increasing: possibly duplicates). They are reloaded line by line.
CREATE OR REPLACE TEMP TABLE irregular_files AS
SELECT file_id
FROM load_profile
WHERE whole_volumes <> rows OR min_volume < 0 OR NOT all_finite
UNION
SELECT unnest($unordered_files::INTEGER[])
UNION
SELECT f.file_id
FROM reject_errors AS e
JOIN reject_scans AS s USING (scan_id, file_id)
JOIN price_files AS f ON f.path = s.file_path;
