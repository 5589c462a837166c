-- The price rows of the batch's symbols, each with its symbol's number instead of its two strings.
SELECT b.symbol_number, p.* EXCLUDE (symbol, security_name)
FROM price_volume_table AS p
JOIN batch_symbols AS b USING (symbol)
