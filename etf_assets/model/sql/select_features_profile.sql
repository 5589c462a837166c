-- One pass over features_table: row count and order-independent checksum (the data snapshot id),
-- symbols with features, and symbols with a row lacking features after their first with them.
SELECT
    ifnull(sum(row_count), 0) AS row_count,
    ifnull(sum(checksum), 0) AS checksum,
    count(first_with) AS symbols_with_features,
    count(*) FILTER (WHERE last_without > first_with) AS symbols_with_gaps
FROM (
    SELECT
        count(*) AS row_count,
        sum(hash(symbol, date, volume, vol_moving_avg, adj_close_rolling_med)) AS checksum,
        min(date) FILTER (
            WHERE isfinite(vol_moving_avg) AND isfinite(adj_close_rolling_med)
        ) AS first_with,
        max(date) FILTER (
            WHERE (isfinite(vol_moving_avg) AND isfinite(adj_close_rolling_med)) IS NOT TRUE
        ) AS last_without
    FROM features_table
    GROUP BY symbol
)
