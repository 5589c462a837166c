-- Symbols outside this run whose features were computed but that have no price rows any more (the
-- archive dropped them): stale too, with no rows, so that their features rows, stage rows and
-- state go with them.
INSERT INTO stale_symbols
SELECT s.symbol, NULL, 0, NULL, 0
FROM features_state AS s
WHERE s.content_hash IS NOT NULL
    AND s.symbol NOT IN (SELECT symbol FROM requested_symbols)
    AND NOT EXISTS (SELECT 1 FROM price_volume_table AS p WHERE p.symbol = s.symbol);
