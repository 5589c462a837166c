"""Ingest at full scale: extraction, CSV -> price_volume_table + Parquet stage 1, next to a bare
DuckDB read_csv of the same files and a polars scan_csv -> Parquet, in the same run."""

from __future__ import annotations

import shutil
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb

from benchmarks.common import (
    BENCH_DIR,
    Measurement,
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
from etf_assets.ingest.archive import safe_extract
from etf_assets.ingest.load_prices import list_price_files, load_prices
from etf_assets.orchestration.resources import Warehouse

WORK = BENCH_DIR / "ingest"
TYPES = {
    "Date": "DATE", "Open": "DOUBLE", "High": "DOUBLE", "Low": "DOUBLE", "Close": "DOUBLE",
    "Adj Close": "DOUBLE", "Volume": "DOUBLE",
}  # fmt: skip


def _fresh(name: str) -> Path:
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_extract(archive: Path) -> None:
    safe_extract(archive, _fresh("extract") / "unpacked")


def pipeline_connection(database: Path) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
    """A connection set up as the assets get theirs."""
    return Warehouse(database=str(database), connection_config=dict(DUCKDB_CONFIG)).get_connection()


def run_pipeline_load(folder: Path) -> int:
    work = _fresh("pipeline")
    with pipeline_connection(work / "warehouse.duckdb") as con:
        return load_prices(con, folder, work / "prices").rows_loaded


def run_bare_duckdb(folder: Path) -> int:
    """The reference: one typed read_csv of every file joined to its symbol, into a table."""
    files, _ = list_price_files(folder)
    work = _fresh("bare")
    with duckdb.connect(str(work / "bare.duckdb")) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(
            "CREATE TABLE files AS SELECT unnest($p) AS path, unnest($s) AS symbol",
            {"p": [f.path for f in files], "s": [f.symbol for f in files]},
        )
        con.execute(
            """CREATE TABLE prices AS SELECT f.symbol, r.*
               FROM read_csv($paths, header = true, filename = true, ignore_errors = true,
                             auto_detect = false, columns = $types) AS r
               JOIN files AS f ON f.path = r.filename""",
            {"paths": [f.path for f in files], "types": TYPES},
        )
        return con.execute("SELECT count(*) FROM prices").fetchone()[0]


def run_polars(folder: Path) -> int:
    """The other reference: polars scan_csv of every file -> one Parquet file."""
    import polars as pl

    work = _fresh("polars")
    files, _ = list_price_files(folder)
    frame = pl.scan_csv(
        [f.path for f in files],
        include_file_paths="path",
        ignore_errors=True,
        schema_overrides={"Volume": pl.Float64},
    )
    frame.sink_parquet(work / "prices.parquet")
    return pl.scan_parquet(work / "prices.parquet").select(pl.len()).collect().item()


def main() -> None:
    folder, archive = full_scale_archive()
    warm_page_cache(archive)
    extract, _ = measure("extract zip (safe_extract)", run_extract, archive)
    shutil.rmtree(WORK / "extract")  # its 3 GB would only push the CSV files out of the cache

    def warm() -> None:
        warm_page_cache(folder)

    ours_label, bare_label = "pipeline: CSV -> table + rejects + Parquet", "bare DuckDB read_csv"
    runs = measure_alternating(
        [Step(ours_label, run_pipeline_load, (folder,), warm),
         Step(bare_label, run_bare_duckdb, (folder,), warm)]
    )  # fmt: skip
    warm()
    polars, polars_rows = measure("polars scan_csv -> Parquet", run_polars, folder)
    ours = [m for m, _ in runs[ours_label]]
    bare = [m for m, _ in runs[bare_label]]
    size = sum(p.stat().st_size for p in folder.rglob("*.csv")) / 1e9
    print_table(
        f"Ingest, full scale ({size:.1f} GB of CSV, {archive.stat().st_size / 1e9:.1f} GB zipped)",
        [
            extract,
            median_of(ours, f"{runs[ours_label][0][1]:,} rows"),
            median_of(bare, f"{runs[bare_label][0][1]:,} rows (+ join into a table)"),
            Measurement(polars.label, polars.seconds, polars.peak_mb, f"{polars_rows:,} rows"),
        ],
        reference=bare_label,
    )
    print_round_ratios(ours, bare)


if __name__ == "__main__":
    main()
