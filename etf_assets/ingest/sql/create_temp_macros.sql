-- Macros shared by the load statements: why one CSV field is not a usable number, or NULL.
CREATE OR REPLACE TEMP MACRO number_problem(field_name, raw, value) AS
    CASE
        WHEN raw IS NULL OR raw = '' THEN field_name || ': missing value'
        WHEN value IS NULL THEN field_name || ': not a number: ' || raw
        WHEN NOT isfinite(value) THEN field_name || ': not a finite number: ' || raw
    END;
