-- Dates that occur more than once in one file among the parseable rows, with their first line.
CREATE OR REPLACE TEMP TABLE duplicate_dates AS
SELECT file_id, date, min(line_number) AS first_line
FROM parsed_prices
WHERE problem IS NULL AND NOT is_blank
GROUP BY file_id, date
HAVING count(*) > 1;
