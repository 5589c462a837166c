-- The price rows of the batch's symbols, each with its symbol's number, in stored order.
SELECT b.symbol_number, p.date, p.open, p.high, p.low, p.close, p.adj_close, p.volume
FROM price_volume_table AS p
JOIN batch_symbols AS b USING (symbol)
