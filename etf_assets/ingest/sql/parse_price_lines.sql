-- Type every data line; `problem` says why a line cannot load, `is_blank` marks dates without values.
CREATE OR REPLACE TEMP TABLE parsed_prices AS
WITH split AS (
    SELECT file_id, line_number, line, string_split(line, ',') AS s
    FROM price_lines
    WHERE line_number > 1 AND line <> ''
        AND file_id NOT IN (SELECT file_id FROM rejected_files)
),
fields AS (
    -- A trailing comma (an empty eighth field) is tolerated, as DuckDB's CSV reader does.
    SELECT file_id, line_number, line, CASE WHEN len(s) = 8 AND s[8] = '' THEN s[1:7] ELSE s END AS f
    FROM split
),
typed AS (
    SELECT
        file_id, line_number, line, f,
        len(f) AS n_fields,
        TRY_CAST(f[1] AS DATE) AS date,
        TRY_CAST(f[2] AS DOUBLE) AS open,
        TRY_CAST(f[3] AS DOUBLE) AS high,
        TRY_CAST(f[4] AS DOUBLE) AS low,
        TRY_CAST(f[5] AS DOUBLE) AS close,
        TRY_CAST(f[6] AS DOUBLE) AS adj_close,
        TRY_CAST(f[7] AS DOUBLE) AS volume
    FROM fields
)
SELECT
    file_id, line_number, line, date, open, high, low, close, adj_close,
    TRY_CAST(volume AS BIGINT) AS volume,
    n_fields = 7 AND f[1] <> '' AND concat(f[2], f[3], f[4], f[5], f[6], f[7]) = '' AS is_blank,
    CASE
        WHEN n_fields <> 7 THEN 'expected 7 fields, found ' || n_fields
        WHEN date IS NULL THEN 'Date: not a date: ' || f[1]
        ELSE coalesce(
            number_problem('Open', f[2], open),
            number_problem('High', f[3], high),
            number_problem('Low', f[4], low),
            number_problem('Close', f[5], close),
            number_problem('Adj Close', f[6], adj_close),
            number_problem('Volume', f[7], volume),
            CASE
                WHEN volume < 0 THEN 'Volume: negative: ' || f[7]
                WHEN volume <> trunc(volume) THEN 'Volume: not a whole number: ' || f[7]
                WHEN volume >= 9.2e18 THEN 'Volume: too large: ' || f[7]
            END
        )
    END AS problem
FROM typed;
