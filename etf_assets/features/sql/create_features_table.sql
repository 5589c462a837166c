-- The features table, empty, when it does not exist yet: the price columns and the two features.
CREATE TABLE IF NOT EXISTS features_table AS
SELECT *, NULL::DOUBLE AS vol_moving_avg, NULL::DOUBLE AS adj_close_rolling_med
FROM price_volume_table
LIMIT 0;
