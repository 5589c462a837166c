-- Per symbol, the content hash and feature-code version its features were last computed from.
CREATE TABLE IF NOT EXISTS features_state (
    symbol VARCHAR PRIMARY KEY,
    content_hash UBIGINT,
    features_version INTEGER,
    computed_at TIMESTAMP
);
