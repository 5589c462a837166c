-- The price rows of the stale symbols, stored in (symbol, date) order for the feature kernels.
CREATE OR REPLACE TEMP TABLE feature_input AS
SELECT *
FROM price_volume_table
WHERE symbol IN (SELECT symbol FROM stale_symbols)
ORDER BY symbol, date;
