-- The symbols of one features batch, numbered in symbol order. Until they are written, the batch's
-- rows carry this number instead of their symbol and security name: two strings less to fetch for
-- every row, and an integer to group and join them by. `security_names` counts NULL as a name;
-- the loader writes one per symbol.
CREATE OR REPLACE TEMP TABLE batch_symbols AS
SELECT
    symbol,
    any_value(security_name) AS security_name,
    count(DISTINCT security_name) + max(CAST(security_name IS NULL AS INTEGER)) AS security_names,
    CAST(row_number() OVER (ORDER BY symbol) AS INTEGER) AS symbol_number
FROM price_volume_table
WHERE symbol IN (SELECT unnest($symbols::VARCHAR[]))
GROUP BY symbol;
