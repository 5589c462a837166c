"""Features at full scale: tables -> features_table + Parquet stage 2, next to pandas
groupby().rolling(30) and polars rolling_mean/rolling_median(30).over(symbol) over the same rows,
in the same run, with a check that all three agree on a sample of symbols."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np

from benchmarks.bench_ingest import WORK, pipeline_connection, run_pipeline_load
from benchmarks.common import (
    Step,
    full_scale_archive,
    measure,
    measure_alternating,
    median_of,
    print_round_ratios,
    print_table,
    warm_page_cache,
)
from etf_assets.constants import DUCKDB_CONFIG
from etf_assets.features.compute import write_features

WAREHOUSE = WORK / "pipeline" / "warehouse.duckdb"
PRICES_STAGE = WORK / "pipeline" / "prices"
OUT = WORK / "features"
SAMPLE_SYMBOLS = 50


def reset_features() -> None:
    """Start from a warehouse without features and an empty stage, as a first run does."""
    shutil.rmtree(OUT / "pipeline_stage", ignore_errors=True)
    with duckdb.connect(str(WAREHOUSE), config=DUCKDB_CONFIG) as con:
        con.execute("DROP TABLE IF EXISTS features_table; DROP TABLE IF EXISTS features_state")
        con.execute("CHECKPOINT")


def run_pipeline_features() -> str:
    with pipeline_connection(WAREHOUSE) as con:
        symbols = [
            r[0] for r in con.execute("SELECT DISTINCT symbol FROM price_volume_table").fetchall()
        ]
        return write_features(con, symbols, OUT / "pipeline_stage").method


def run_pandas() -> None:
    with duckdb.connect(str(WAREHOUSE), read_only=True) as con:
        con.execute("SET enable_progress_bar = false")
        frame = con.execute(
            "SELECT symbol, date, volume, adj_close FROM price_volume_table ORDER BY symbol, date"
        ).df()
    grouped = frame.groupby("symbol", sort=False)
    frame["vol_moving_avg"] = grouped["volume"].rolling(30).mean().reset_index(level=0, drop=True)
    frame["adj_close_rolling_med"] = (
        grouped["adj_close"].rolling(30).median().reset_index(level=0, drop=True)
    )
    frame.to_parquet(OUT / "pandas.parquet")


def run_polars() -> None:
    import polars as pl

    (
        pl.scan_parquet(PRICES_STAGE / "*.parquet")
        .sort("Symbol", "Date")
        .with_columns(
            pl.col("Volume").rolling_mean(30).over("Symbol").alias("vol_moving_avg"),
            pl.col("Adj Close").rolling_median(30).over("Symbol").alias("adj_close_rolling_med"),
        )
        .sink_parquet(OUT / "polars.parquet")
    )


def check_agreement() -> str:
    """Compare the three results on a sample of symbols; return a one-line verdict."""
    con = duckdb.connect()
    symbols = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT \"Symbol\" FROM read_parquet('{OUT}/pipeline_stage/*.parquet') "
            f"USING SAMPLE {SAMPLE_SYMBOLS} ROWS (reservoir, 7)"
        ).fetchall()
    ]
    queries = {
        "pipeline": f"""SELECT "Symbol", "Date", vol_moving_avg, adj_close_rolling_med
                        FROM read_parquet('{OUT}/pipeline_stage/*.parquet')""",
        "pandas": f"""SELECT symbol, CAST(CAST(date AS DATE) AS VARCHAR), vol_moving_avg,
                             adj_close_rolling_med
                      FROM read_parquet('{OUT}/pandas.parquet')""",
        "polars": f"""SELECT "Symbol", "Date", vol_moving_avg, adj_close_rolling_med
                      FROM read_parquet('{OUT}/polars.parquet')""",
    }
    results = {
        name: np.array(
            con.execute(
                f"SELECT * FROM ({q}) WHERE 1=1 AND #1 IN (SELECT unnest($s)) ORDER BY #1, #2",
                {"s": symbols},
            ).fetchall(),
            dtype=object,
        )
        for name, q in queries.items()
    }
    base = results["pipeline"]
    for name in ("pandas", "polars"):
        other = results[name]
        assert base.shape == other.shape, (name, base.shape, other.shape)
        assert (base[:, :2] == other[:, :2]).all(), name
        for col in (2, 3):
            a = np.array([np.nan if v is None else v for v in base[:, col]], dtype=float)
            b = np.array([np.nan if v is None else v for v in other[:, col]], dtype=float)
            np.testing.assert_allclose(a, b, rtol=1e-9, equal_nan=True, err_msg=name)
    return f"all three agree on {len(base):,} rows of {len(symbols)} sampled symbols"


def main() -> None:
    if not WAREHOUSE.is_file():
        folder, _ = full_scale_archive()
        run_pipeline_load(folder)
    OUT.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(WAREHOUSE), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM price_volume_table").fetchone()[0]

    def fresh_features() -> None:
        reset_features()
        warm_page_cache(WAREHOUSE)

    ours_label, polars_label = "pipeline: features_table + Parquet stage 2", "polars over(symbol)"
    runs = measure_alternating(
        [Step(ours_label, run_pipeline_features, (), fresh_features),
         Step(polars_label, run_polars, (), lambda: warm_page_cache(PRICES_STAGE))]
    )  # fmt: skip
    warm_page_cache(WAREHOUSE)
    pandas, _ = measure("pandas groupby().rolling(30) -> Parquet", run_pandas)
    ours = [m for m, _ in runs[ours_label]]
    polars = [m for m, _ in runs[polars_label]]
    print_table(
        f"Features, full scale ({rows:,} rows)",
        [
            median_of(ours, f"method: {runs[ours_label][0][1]}"),
            median_of(polars, "Parquet -> Parquet"),
            pandas,
        ],
        polars_label,
    )
    print_round_ratios(ours, polars)
    print("  " + check_agreement())


if __name__ == "__main__":
    main()
