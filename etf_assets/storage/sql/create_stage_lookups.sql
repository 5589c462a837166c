-- The stages' text columns as ENUMs, one entry per distinct value. DuckDB writes an ENUM column
-- to Parquet as a dictionary-encoded string column instead of encoding every row's string, which
-- is most of the cost of writing a stage with plain strings. {symbols} holds the symbol and
-- security name of each {key} that the rows of {table} carry; all three are fixed names, never
-- input.
CREATE OR REPLACE TEMP TABLE stage_date_values AS
SELECT DISTINCT date FROM {table};

CREATE OR REPLACE TEMP TYPE stage_symbol_text AS ENUM (
    SELECT DISTINCT symbol FROM {symbols}
);

CREATE OR REPLACE TEMP TYPE stage_security_name_text AS ENUM (
    SELECT DISTINCT security_name FROM {symbols} WHERE security_name IS NOT NULL
);

CREATE OR REPLACE TEMP TYPE stage_date_text AS ENUM (
    SELECT CAST(date AS VARCHAR) FROM stage_date_values
);

CREATE OR REPLACE TEMP TABLE stage_symbols AS
SELECT
    {key},
    CAST(symbol AS stage_symbol_text) AS symbol_text,
    CAST(security_name AS stage_security_name_text) AS security_name_text
FROM {symbols};

CREATE OR REPLACE TEMP TABLE stage_dates AS
SELECT date, CAST(CAST(date AS VARCHAR) AS stage_date_text) AS date_text
FROM stage_date_values;
