-- Files of the line-by-line path that are not UTF-8 text: rejected whole.
CREATE OR REPLACE TEMP TABLE rejected_files AS
SELECT file_id, 'not UTF-8 text' AS reason
FROM price_lines
WHERE line_number IS NULL;
