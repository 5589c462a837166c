-- One row per requested symbol: what its features_table partition holds, for its own metadata.
SELECT
    symbol,
    count(*) AS rows,
    min(date) AS first_date,
    max(date) AS last_date,
    count(vol_moving_avg) AS rows_with_features,
    arg_max(vol_moving_avg, date) AS last_vol_moving_avg,
    arg_max(adj_close_rolling_med, date) AS last_adj_close_rolling_med
FROM features_table
WHERE symbol IN (SELECT symbol FROM requested_symbols)
GROUP BY symbol
