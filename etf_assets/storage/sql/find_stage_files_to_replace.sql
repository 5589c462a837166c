-- Stage files holding rows of the symbols in {symbols_table}, with how many rows of other
-- symbols each holds (0: the file can simply go). The table name is a fixed name, never input.
SELECT
    filename,
    count(*) FILTER (WHERE "Symbol" NOT IN (SELECT symbol FROM {symbols_table})) AS rows_kept
FROM read_parquet($files, filename = true)
GROUP BY filename
HAVING count(*) FILTER (WHERE "Symbol" IN (SELECT symbol FROM {symbols_table})) > 0
