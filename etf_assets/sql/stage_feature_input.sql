-- The price rows of the requested symbols, stored in (symbol, date) order for the feature kernels.
CREATE OR REPLACE TEMP TABLE feature_input AS
SELECT *
FROM price_volume_table
WHERE symbol IN (SELECT symbol FROM requested_symbols)
ORDER BY symbol, date;
