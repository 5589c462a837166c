-- Fast path: one typed, parallel scan of every price file straight into price_volume_table.
-- Files whose rows need more than a typed read (reader rejects, blanks, duplicates, negative
-- volumes) are found afterwards and reloaded line by line.
CREATE OR REPLACE TABLE price_volume_table AS
SELECT
    f.symbol,
    f.security_name,
    r."Date" AS date,
    r."Open" AS open,
    r."High" AS high,
    r."Low" AS low,
    r."Close" AS close,
    r."Adj Close" AS adj_close,
    r."Volume" AS volume
FROM read_csv(
    $paths,
    header = true,
    auto_detect = false,
    delim = ',',
    quote = '',
    escape = '',
    filename = true,
    store_rejects = true,
    columns = {
        'Date': 'DATE', 'Open': 'DOUBLE', 'High': 'DOUBLE', 'Low': 'DOUBLE', 'Close': 'DOUBLE',
        'Adj Close': 'DOUBLE', 'Volume': 'BIGINT'
    }
) AS r
JOIN price_files AS f ON f.path = r.filename;
