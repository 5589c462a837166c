-- One row per NASDAQ Symbol of the meta file, with the price coverage loaded for it.
CREATE OR REPLACE TABLE symbol_table AS
WITH coverage AS (
    SELECT symbol, count(*) AS price_rows, min(date) AS first_date, max(date) AS last_date
    FROM price_volume_table
    GROUP BY symbol
)
SELECT
    m.symbol,
    m.listing_symbol,
    m.security_name,
    m.etf = 'Y' AS is_etf,
    m.nasdaq_traded = 'Y' AS nasdaq_traded,
    NULLIF(trim(m.listing_exchange), '') AS listing_exchange,
    NULLIF(trim(m.market_category), '') AS market_category,
    TRY_CAST(m.round_lot_size AS DOUBLE) AS round_lot_size,
    m.test_issue = 'Y' AS test_issue,
    NULLIF(trim(m.financial_status), '') AS financial_status,
    NULLIF(trim(m.cqs_symbol), '') AS cqs_symbol,
    m.next_shares = 'Y' AS next_shares,
    coalesce(c.price_rows, 0) AS price_rows,
    c.first_date,
    c.last_date
FROM symbols_meta AS m
LEFT JOIN coverage AS c USING (symbol)
ORDER BY m.symbol;
