-- Symbols whose feature rows break the window rule: both features NULL for the symbol's first 29
-- rows and present from row 30 on. Per symbol, that is: as many rows with each feature as rows
-- after the 29th, and every row without one dated before every row with one (dates are unique
-- per symbol, which unique_symbol_date checks). One aggregate per symbol, where numbering each
-- symbol's rows by date would sort the whole table.
SELECT symbol, rows, rows_with_vol_moving_avg, rows_with_adj_close_rolling_med,
       last_date_without_features >= first_date_with_features AS feature_gap
FROM (
    SELECT
        symbol,
        count(*) AS rows,
        count(vol_moving_avg) AS rows_with_vol_moving_avg,
        count(adj_close_rolling_med) AS rows_with_adj_close_rolling_med,
        max(date) FILTER (
            WHERE vol_moving_avg IS NULL OR adj_close_rolling_med IS NULL
        ) AS last_date_without_features,
        min(date) FILTER (
            WHERE vol_moving_avg IS NOT NULL OR adj_close_rolling_med IS NOT NULL
        ) AS first_date_with_features
    FROM features_table
    GROUP BY symbol
)
WHERE rows_with_vol_moving_avg <> greatest(rows - 29, 0)
   OR rows_with_adj_close_rolling_med <> greatest(rows - 29, 0)
   OR last_date_without_features >= first_date_with_features
ORDER BY symbol;
