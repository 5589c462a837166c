-- Everything that could not load, with its file, line number (NULL: the whole file) and reason.
CREATE OR REPLACE TABLE rejected_rows AS
SELECT f.archive_path AS file, p.line_number, p.problem AS reason, p.line AS content
FROM parsed_prices AS p
JOIN price_files AS f USING (file_id)
WHERE p.problem IS NOT NULL AND NOT p.is_blank
UNION ALL
SELECT f.archive_path, p.line_number,
    'duplicate date ' || strftime(p.date, '%Y-%m-%d') || ' (first seen on line ' || d.first_line || ')',
    p.line
FROM parsed_prices AS p
JOIN price_files AS f USING (file_id)
JOIN duplicate_dates AS d ON d.file_id = p.file_id AND d.date = p.date
WHERE p.problem IS NULL AND NOT p.is_blank AND p.line_number <> d.first_line
UNION ALL
SELECT f.archive_path, NULL, r.reason, NULL
FROM rejected_files AS r
JOIN price_files AS f USING (file_id)
UNION ALL
SELECT file, line_number, reason, content
FROM other_rejections;
