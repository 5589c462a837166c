-- Rows whose prices contradict each other, counted per rule (real data breaks some of them).
SELECT
    count(*) FILTER (WHERE low > open) AS low_above_open,
    count(*) FILTER (WHERE low > close) AS low_above_close,
    count(*) FILTER (WHERE open > high) AS open_above_high,
    count(*) FILTER (WHERE close > high) AS close_above_high,
    count(*) FILTER (WHERE volume < 0) AS negative_volume,
    count(*) AS rows
FROM price_volume_table;
