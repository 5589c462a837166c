-- The model rows (both features finite) with the previous row's features and the random split,
-- lag by a window (sorts all rows): the loader's fallback when rows are not stored symbol by
-- symbol in date order. lag_*: the symbol's previous trading day (NaN on its first row), the
-- leakage-free variant. random_test: a seeded hash of (symbol, date), independent of row order.
SELECT day, vol_moving_avg, adj_close_rolling_med, volume,
       lag_vol_moving_avg, lag_adj_close_rolling_med, random_test
FROM (
    SELECT
        (date - DATE '1970-01-01')::INTEGER AS day,
        vol_moving_avg,
        adj_close_rolling_med,
        volume::DOUBLE AS volume,
        ifnull(lag(vol_moving_avg) OVER symbol_days, 'NaN')::DOUBLE AS lag_vol_moving_avg,
        ifnull(lag(adj_close_rolling_med) OVER symbol_days, 'NaN')::DOUBLE AS lag_adj_close_rolling_med,
        (hash(symbol, date, $seed::INTEGER) % 1000000) < $test_fraction * 1000000 AS random_test
    FROM features_table
    WINDOW symbol_days AS (PARTITION BY symbol ORDER BY date)
)
WHERE isfinite(vol_moving_avg) AND isfinite(adj_close_rolling_med) AND volume IS NOT NULL
