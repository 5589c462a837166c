-- The rows with both features finite, in storage order (no sort), with hash(symbol) for the lag
-- to be taken in numpy when every symbol's rows are stored together in date order.
SELECT
    (date - DATE '1970-01-01')::INTEGER AS day,
    vol_moving_avg,
    adj_close_rolling_med,
    ifnull(volume::DOUBLE, 'NaN') AS volume,
    hash(symbol) AS symbol_hash,
    (hash(symbol, date, $seed::INTEGER) % 1000000) < $test_fraction * 1000000 AS random_test
FROM features_table
WHERE isfinite(vol_moving_avg) AND isfinite(adj_close_rolling_med)
