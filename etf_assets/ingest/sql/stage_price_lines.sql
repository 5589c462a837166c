-- Split the irregular price files into numbered lines; a file that is not UTF-8 text gets one NULL line.
CREATE OR REPLACE TEMP TABLE price_lines AS
WITH texts AS (
    SELECT f.file_id, try(decode(b.content)) AS text
    FROM read_blob($paths) AS b
    JOIN price_files AS f ON f.path = b.filename
),
split AS (
    SELECT file_id, string_split(text, chr(10)) AS lines FROM texts
)
SELECT
    file_id,
    generate_subscripts(lines, 1) AS line_number,
    rtrim(unnest(lines), chr(13)) AS line
FROM split
WHERE lines IS NOT NULL
UNION ALL
SELECT file_id, NULL, NULL FROM texts WHERE text IS NULL;
