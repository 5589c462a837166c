-- Requested symbols whose price rows changed (content hash) or whose features were computed by
-- another version of the feature code; the others need no recomputation. With each, the security
-- name its rows carry, and how many they carry (NULL counted as a name): the loader writes one.
CREATE OR REPLACE TEMP TABLE stale_symbols AS
WITH current_hashes AS (
    SELECT
        symbol,
        bit_xor(hash(date, open, high, low, close, adj_close, volume, security_name))
            AS content_hash,
        count(*) AS rows,
        any_value(security_name) AS security_name,
        count(DISTINCT security_name) + max(CAST(security_name IS NULL AS INTEGER))
            AS security_names
    FROM price_volume_table
    WHERE symbol IN (SELECT symbol FROM requested_symbols)
    GROUP BY symbol
)
SELECT
    r.symbol,
    c.content_hash,
    coalesce(c.rows, 0) AS rows,
    c.security_name,
    coalesce(c.security_names, 0) AS security_names
FROM requested_symbols AS r
LEFT JOIN current_hashes AS c USING (symbol)
LEFT JOIN features_state AS s USING (symbol)
WHERE s.symbol IS NULL
    OR c.content_hash IS DISTINCT FROM s.content_hash
    OR s.features_version <> $features_version;
