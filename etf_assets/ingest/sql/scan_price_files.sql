-- Fast path: one typed, parallel scan of every price file into the load table. Rows the reader
-- cannot type are skipped (ignore_errors), empty fields among them (force_not_null): a file whose
-- rows then fall short of its lines is reloaded line by line. Volume is read as DOUBLE and kept
-- only when it is a whole number: a BIGINT read would round "100.5" silently.
CREATE OR REPLACE TABLE price_volume_load AS
SELECT
    f.symbol,
    f.security_name,
    r."Date" AS date,
    r."Open" AS open,
    r."High" AS high,
    r."Low" AS low,
    r."Close" AS close,
    r."Adj Close" AS adj_close,
    CASE
        WHEN r."Volume" = trunc(r."Volume") AND abs(r."Volume") < 9.2e18
            THEN CAST(r."Volume" AS BIGINT)
    END AS volume,
    CAST(r.file_index AS INTEGER) AS file_id  -- dropped when the load is complete
FROM read_csv(
    $paths,
    header = true,
    auto_detect = false,
    delim = ',',
    quote = '',
    escape = '',
    ignore_errors = true,
    force_not_null = ['Date', 'Open', 'High', 'Low', 'Close', 'Adj Close', 'Volume'],
    columns = {
        'Date': 'DATE', 'Open': 'DOUBLE', 'High': 'DOUBLE', 'Low': 'DOUBLE', 'Close': 'DOUBLE',
        'Adj Close': 'DOUBLE', 'Volume': 'DOUBLE'
    }
) AS r
JOIN price_files AS f ON f.file_id = r.file_index;
