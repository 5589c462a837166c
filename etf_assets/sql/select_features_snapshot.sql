-- Fingerprint of the model's inputs: row count and an order-independent checksum of their columns.
SELECT count(*) AS row_count,
       ifnull(sum(hash(symbol, date, volume, vol_moving_avg, adj_close_rolling_med)), 0) AS checksum
FROM features_table
