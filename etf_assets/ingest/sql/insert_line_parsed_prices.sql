-- Loadable rows of the line-by-line path: parseable, not blank, first occurrence of their date;
-- stored in line order, as the typed scan stores its files, so that readers in storage order
-- (model training's lag) find each symbol's dates ascending.
INSERT INTO price_volume_load
SELECT
    f.symbol,
    f.security_name,
    p.date,
    p.open,
    p.high,
    p.low,
    p.close,
    p.adj_close,
    p.volume,
    p.file_id
FROM parsed_prices AS p
JOIN price_files AS f USING (file_id)
LEFT JOIN duplicate_dates AS d ON d.file_id = p.file_id AND d.date = p.date
WHERE p.problem IS NULL
    AND NOT p.is_blank
    AND (d.first_line IS NULL OR p.line_number = d.first_line)
ORDER BY p.file_id, p.line_number;
