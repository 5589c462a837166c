-- Symbols with price rows but a different number of feature rows (none, stale or extra).
WITH prices AS (SELECT symbol, count(*) AS n FROM price_volume_table GROUP BY symbol),
features AS (SELECT symbol, count(*) AS n FROM features_table GROUP BY symbol)
SELECT coalesce(p.symbol, f.symbol) AS symbol, coalesce(p.n, 0) AS price_rows,
    coalesce(f.n, 0) AS feature_rows
FROM prices AS p
FULL OUTER JOIN features AS f USING (symbol)
WHERE p.n IS DISTINCT FROM f.n
ORDER BY symbol;
