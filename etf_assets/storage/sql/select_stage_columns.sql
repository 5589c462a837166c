-- Rows in the Parquet stages' layout (the problem statement's names and types), the text columns
-- from the lookups of create_stage_lookups.sql. The table, key and extra columns are filled in
-- from fixed names by parquet_stage.copy_stage_rows, never from input.
SELECT
    s.symbol_text AS "Symbol",
    s.security_name_text AS "Security Name",
    d.date_text AS "Date",
    p.open AS "Open",
    p.high AS "High",
    p.low AS "Low",
    p.close AS "Close",
    p.adj_close AS "Adj Close",
    p.volume AS "Volume"{extra_columns}
FROM {table} AS p
JOIN stage_symbols AS s ON p.{key} = s.{key}
JOIN stage_dates AS d ON p.date = d.date
