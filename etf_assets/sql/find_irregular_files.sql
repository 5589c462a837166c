-- Files the typed scan cannot load exactly: reader rejects, missing values, negative volumes,
-- non-finite numbers or duplicate dates. They are reloaded by the line-by-line path.
CREATE OR REPLACE TEMP TABLE irregular_files AS
WITH irregular_symbols AS (
    SELECT symbol
    FROM price_volume_table
    GROUP BY symbol
    HAVING count(date) + count(open) + count(high) + count(low) + count(close) + count(adj_close)
            + count(volume) <> 7 * count(*)
        OR min(volume) < 0
        OR NOT bool_and(isfinite(open + high + low + close + adj_close))
    UNION
    SELECT DISTINCT symbol
    FROM price_volume_table
    GROUP BY symbol, date
    HAVING count(*) > 1
)
SELECT f.file_id
FROM irregular_symbols JOIN price_files AS f USING (symbol)
UNION
SELECT f.file_id
FROM reject_errors AS e
JOIN reject_scans AS s USING (scan_id, file_id)
JOIN price_files AS f ON f.path = s.file_path;
