-- Deterministic daily OHLCV rows for every symbol in sample_symbols (hash-seeded, so thread-independent).
CREATE OR REPLACE TEMP TABLE sample_prices AS
WITH calendar AS (
    SELECT d::DATE AS date, row_number() OVER (ORDER BY d DESC) - 1 AS age
    FROM range(DATE '1962-01-02', DATE '2020-04-02', INTERVAL 1 DAY) AS t(d)
    WHERE isodow(d) <= 5
),
draws AS (
    SELECT
        s.sid, c.date, c.age, s.n_rows, s.base_price, s.base_volume,
        (hash(s.sid, c.age, $seed, 1) + 0.5) / 18446744073709551616.0 AS u1,
        hash(s.sid, c.age, $seed, 2) / 18446744073709551616.0 AS u2,
        hash(s.sid, c.age, $seed, 3) / 18446744073709551616.0 AS u3,
        hash(s.sid, c.age, $seed, 4) / 18446744073709551616.0 AS u4,
        hash(s.sid, c.age, $seed, 5) / 18446744073709551616.0 AS u5
    FROM sample_symbols AS s
    JOIN calendar AS c ON c.age < s.n_rows
),
walk AS (
    SELECT
        sid, date, age, n_rows, base_volume, u3, u4, u5,
        -- Box-Muller: two independent standard normals from two uniforms.
        sqrt(-2 * ln(u1)) * sin(2 * pi() * u2) AS volume_noise,
        base_price * exp(sum(0.02 * sqrt(-2 * ln(u1)) * cos(2 * pi() * u2)) OVER (
            PARTITION BY sid ORDER BY date ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        )) AS close
    FROM draws
),
bars AS (
    SELECT
        sid, date, close, u4, u5, volume_noise, base_volume,
        close * (1 + 0.02 * (u3 - 0.5)) AS open,
        -- Dividends and splits make Adj Close drift below Close going back in time.
        close * (0.55 + 0.45 * (n_rows - age) / n_rows) AS adj_close
    FROM walk
)
SELECT
    sid,
    date,
    -- Float32 precision, written back as double: the real files look like 11.84000015258789.
    open::FLOAT::DOUBLE AS open,
    (greatest(open, close) * (1 + 0.02 * u4))::FLOAT::DOUBLE AS high,
    (least(open, close) * (1 - 0.02 * u5))::FLOAT::DOUBLE AS low,
    close::FLOAT::DOUBLE AS close,
    adj_close::FLOAT::DOUBLE AS adj_close,
    CASE WHEN u5 < 0.001 THEN 0 ELSE round(base_volume * exp(0.6 * volume_noise))::BIGINT END
        AS volume
FROM bars
ORDER BY sid, date;
