-- One symbol's rows in the dataset's CSV layout; the caller wraps it in COPY ... TO <file>.
SELECT
    strftime(date, '%Y-%m-%d') AS "Date",
    open AS "Open",
    high AS "High",
    low AS "Low",
    close AS "Close",
    adj_close AS "Adj Close",
    volume AS "Volume"
FROM sample_prices
WHERE sid = {sid}
ORDER BY date
