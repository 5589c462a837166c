-- One pass over the fast scan's rows: per file, what makes it irregular (volumes that are not
-- whole numbers or are negative, non-finite prices).
CREATE OR REPLACE TEMP TABLE load_profile AS
SELECT
    file_id,
    count(*) AS rows,
    count(volume) AS whole_volumes,
    min(volume) AS min_volume,
    bool_and(isfinite(open + high + low + close + adj_close)) AS all_finite
FROM price_volume_load
GROUP BY file_id;
