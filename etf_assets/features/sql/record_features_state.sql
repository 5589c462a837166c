-- Remember what the stale symbols' features were computed from.
INSERT OR REPLACE INTO features_state
SELECT symbol, content_hash, $features_version, now()::TIMESTAMP
FROM stale_symbols;
