-- Feature rows that break the window rule: NULL exactly for each symbol's first 29 rows.
WITH numbered AS (
    SELECT
        vol_moving_avg,
        adj_close_rolling_med,
        row_number() OVER (PARTITION BY symbol ORDER BY date) AS row_in_symbol
    FROM features_table
)
SELECT
    count(*) FILTER (
        WHERE row_in_symbol < 30 AND (vol_moving_avg IS NOT NULL OR adj_close_rolling_med IS NOT NULL)
    ) AS early_rows_with_values,
    count(*) FILTER (
        WHERE row_in_symbol >= 30 AND (vol_moving_avg IS NULL OR adj_close_rolling_med IS NULL)
    ) AS later_rows_without_values
FROM numbered;
