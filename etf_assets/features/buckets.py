"""Features on a Dask cluster: each batch of symbols (a bucket) is a task on a worker, and the
run's own process, the warehouse's one writer, inserts what the tasks wrote.

A worker computes its bucket with `compute_features`, as the local path does, on an in-memory
DuckDB whose `price_volume_table` holds the bucket's rows of Parquet stage 1, and writes the
bucket's stage 2 file with the same writer. Parquet keeps doubles, integers and NULLs exactly, so
the rows the run inserts from that file are the rows the local path inserts.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import duckdb

from etf_assets.cluster.tasks import Cluster
from etf_assets.constants import FEATURE_COLUMNS
from etf_assets.features import sql
from etf_assets.features.batch import compute_features, write_stage_file
from etf_assets.storage.parquet_stage import SymbolReplacement, define_stage_rows
from etf_assets.storage.session_settings import rows_in_any_order

log = logging.getLogger(__name__)


class PricesStageMismatchError(RuntimeError):
    """Parquet stage 1 does not hold the rows `price_volume_table` holds for the symbols."""


def compute_bucket(
    prices: str, symbols: dict[str, str | None], rows: int, method: str, path: str
) -> int:
    """Compute the features of `symbols` (each with its security name) from the stage 1 files
    `prices` (a path or glob) and write them, in the stage layout, to the file `path`; return
    its rows with features.

    Refuses unless stage 1 holds the `rows` that `price_volume_table` holds for the symbols: a
    stage of another load would give other features.

    The file is written under a name of its own beside `path`, then renamed to `path`, so that
    a second attempt of the task replaces the first's file. That name ends in ".pending" too:
    what an attempt killed while writing leaves, the next features run removes.
    """
    with duckdb.connect() as con:
        define_stage_rows(con)
        con.execute(sql.load("load_stage_prices"), {"files": prices, "symbols": list(symbols)})
        [(found,)] = con.execute("SELECT count(*) FROM price_volume_table").fetchall()
        if found != rows:
            raise PricesStageMismatchError(
                f"Parquet stage 1 ({prices}) holds {found:,} rows of {len(symbols)} symbols, "
                f"price_volume_table {rows:,}: load the prices again to rewrite both"
            )
        batch = compute_features(con, symbols, method)
    target = Path(path)
    written = target.with_suffix(f".{uuid.uuid4().hex[:12]}.pending")
    try:
        write_stage_file(batch, written)
        os.replace(written, target)
    except BaseException:
        written.unlink(missing_ok=True)
        raise
    return rows - batch.rows[FEATURE_COLUMNS[0]].null_count


def insert_buckets(
    con: duckdb.DuckDBPyConnection,
    cluster: Cluster,
    batches: list[dict[str, str | None]],
    method: str,
    prices_stage: Path,
    stage: SymbolReplacement,
) -> int:
    """Compute every batch as a task on `cluster`, each into a new file of `stage`, and insert
    each file's rows into `features_table` as its task finishes; return the rows with features.
    """
    rows = dict(con.execute("SELECT symbol, rows FROM stale_symbols").fetchall())
    paths = [stage.new_file() for _ in batches]
    prices = str(prices_stage / "*.parquet")
    with_features = 0
    define_stage_rows(con)
    with rows_in_any_order(con):
        for number, (position, computed) in enumerate(
            cluster.completed(
                "features",
                compute_bucket,
                [
                    (prices, batch, sum(rows[symbol] for symbol in batch), method, str(path))
                    for batch, path in zip(batches, paths, strict=True)
                ],
            ),
            start=1,
        ):
            con.execute(sql.load("insert_stage_file"), {"path": str(paths[position])})
            with_features += computed
            log.info("features: bucket %d of %d inserted", number, len(paths))
    return with_features
