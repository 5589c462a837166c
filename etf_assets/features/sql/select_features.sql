-- The definition of the features: per symbol, over the 30 most recent rows including the current
-- one; NULL while the symbol has fewer than 30 rows. MEDIAN of an even count is the mean of the
-- two middle values. Rows carry their symbol's number in the batch (features.compute_features).
SELECT
    b.symbol_number,
    p.* EXCLUDE (symbol, security_name),
    CASE WHEN count(*) OVER w = 30 THEN avg(p.volume) OVER w END AS vol_moving_avg,
    CASE WHEN count(*) OVER w = 30 THEN median(p.adj_close) OVER w END AS adj_close_rolling_med
FROM price_volume_table AS p
JOIN batch_symbols AS b USING (symbol)
WINDOW w AS (PARTITION BY p.symbol ORDER BY p.date ROWS BETWEEN 29 PRECEDING AND CURRENT ROW)
ORDER BY b.symbol_number, p.date
