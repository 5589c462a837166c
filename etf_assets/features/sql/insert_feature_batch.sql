-- One computed batch into features_table, each row with its symbol and security name again.
INSERT INTO features_table BY NAME
SELECT s.symbol, s.security_name, r.* EXCLUDE (symbol_number)
FROM feature_batch_rows AS r
JOIN feature_batch_symbols AS s USING (symbol_number)
