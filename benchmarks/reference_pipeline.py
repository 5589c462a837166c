"""The end-to-end reference: `make run`'s work as one plain polars + scikit-learn script.

    python benchmarks/reference_pipeline.py ARCHIVE.zip WORK_DIR

Unzips the archive into WORK_DIR/unpacked, writes Parquet stage 1 (every price row with its
symbol and security name) and stage 2 (the two 30-row features per symbol), fits the degree-2
polynomial Pipeline on the rows where both features exist, and prints one JSON line: the rows it
fitted on and each phase's seconds.

It imports nothing from the project, so that it measures what a user could write by hand: no
rejected-rows bookkeeping, no DuckDB warehouse, no MLflow, no orchestration.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import zipfile
from pathlib import Path

import polars as pl

PRICE_COLUMNS = ["Open", "High", "Low", "Close", "Adj Close"]
# Volume is read as a float because files with a blank row write it as `963000.0`.
CSV_SCHEMA = {"Date": pl.String, **dict.fromkeys(PRICE_COLUMNS, pl.Float64), "Volume": pl.Float64}
STAGE1_COLUMNS = ["Symbol", "Security Name", "Date", *PRICE_COLUMNS, "Volume"]


def unzip(archive: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(target)
    return target


def read_meta(root: Path) -> pl.DataFrame:
    # Every column as text and no null markers: the ticker `NA` is a symbol.
    return pl.read_csv(
        root / "symbols_valid_meta.csv",
        columns=["NASDAQ Symbol", "Security Name"],
        infer_schema=False,
        empty_string_is_null=False,
    ).rename({"NASDAQ Symbol": "Symbol"})


def write_stage1(root: Path, stage: Path) -> None:
    files = sorted([*root.glob("stocks/*.csv"), *root.glob("etfs/*.csv")])
    # The symbol is the file name without `.csv`, joined on the path polars records per row:
    # a join against 8,000 keys is cheaper than string surgery on every row.
    symbols = pl.LazyFrame(
        {"path": [str(f) for f in files], "Symbol": [f.name[: -len(".csv")] for f in files]}
    )
    prices = pl.scan_csv(
        [str(f) for f in files],
        schema=CSV_SCHEMA,
        include_file_paths="path",
        # Bad values become nulls and a file that is not a CSV at all loads as nothing, where the
        # pipeline rejects them with their reason: the reference does not stop on them either.
        ignore_errors=True,
        encoding="utf8-lossy",
        extra_columns="ignore",
        missing_columns="insert",
        truncate_ragged_lines=True,
        glob=False,
    )
    stage.mkdir(parents=True, exist_ok=True)
    (
        prices
        # A row with a date and no values is not a price.
        .filter(pl.any_horizontal(pl.col([*PRICE_COLUMNS, "Volume"]).is_not_null()))
        .join(symbols, on="path", how="left")
        .join(read_meta(root).lazy(), on="Symbol", how="left")
        .with_columns(pl.col("Volume").cast(pl.Int64))
        .select(STAGE1_COLUMNS)
        .sink_parquet(stage / "prices.parquet")
    )


def write_stage2(stage1: Path, stage2: Path) -> None:
    stage2.mkdir(parents=True, exist_ok=True)
    (
        pl.scan_parquet(stage1 / "*.parquet")
        .sort("Symbol", "Date")
        .with_columns(
            pl.col("Volume").rolling_mean(30).over("Symbol").alias("vol_moving_avg"),
            pl.col("Adj Close").rolling_median(30).over("Symbol").alias("adj_close_rolling_med"),
        )
        .sink_parquet(stage2 / "features.parquet")
    )


def train(stage2: Path) -> int:
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    features = ["vol_moving_avg", "adj_close_rolling_med"]
    frame = (
        pl.scan_parquet(stage2 / "*.parquet")
        .select(*features, "Volume")
        .drop_nulls(features)
        .collect()
    )
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("poly", PolynomialFeatures(2, include_bias=False)),
            ("regression", LinearRegression()),
        ]
    )
    model.fit(frame.select(features).to_numpy(), frame["Volume"].to_numpy())
    return frame.height


def main(argv: list[str]) -> None:
    archive, work = Path(argv[0]), Path(argv[1])
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    root = unzip(archive, work / "unpacked")
    seconds["unzip"] = time.perf_counter() - start
    write_stage1(root, work / "stage1")
    seconds["stage 1"] = time.perf_counter() - start - sum(seconds.values())
    write_stage2(work / "stage1", work / "stage2")
    seconds["stage 2"] = time.perf_counter() - start - sum(seconds.values())
    model_rows = train(work / "stage2")
    seconds["fit"] = time.perf_counter() - start - sum(seconds.values())
    print(json.dumps({"model_rows": model_rows, "seconds": seconds}))


if __name__ == "__main__":
    main(sys.argv[1:])
