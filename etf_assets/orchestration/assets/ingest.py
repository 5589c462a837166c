"""Stage 1: the archive loaded into DuckDB (`price_volume_table`, `symbol_table`) and Parquet."""

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from etf_assets.constants import META_FILE, PRICE_VOLUME_TABLE, REJECTED_ROWS_TABLE, SYMBOL_TABLE
from etf_assets.ingest import sql
from etf_assets.ingest.load_prices import LOAD_TABLE, load_prices
from etf_assets.ingest.manifest import MissingDatasetError, dataset_root
from etf_assets.ingest.symbols_meta import read_symbols_meta, register_symbols_meta
from etf_assets.orchestration.disk_guard import failing_clearly_on_full_disk
from etf_assets.orchestration.metadata import query_markdown, table_metadata
from etf_assets.orchestration.partitions import sync_symbol_partitions
from etf_assets.orchestration.resources import EtfSettings
from etf_assets.orchestration.schemas import PRICE_VOLUME_SCHEMA, SYMBOL_SCHEMA


def _unpacked_dataset(settings: EtfSettings) -> Path:
    try:
        return dataset_root(settings.manifest_path)
    except MissingDatasetError as exc:
        raise dg.Failure(description=str(exc)) from exc


@dg.asset(
    name=PRICE_VOLUME_TABLE,
    metadata={"dagster/column_schema": PRICE_VOLUME_SCHEMA},
    deps=["raw_zip"],
    group_name="ingest",
    kinds={"duckdb", "parquet"},
)
def price_volume_table(
    context: dg.AssetExecutionContext, settings: EtfSettings, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """Every daily row of every price file, under its file's symbol, with its security name.

    Rows that break the schema go to the `rejected_rows` table with file, line and reason; rows
    with a date and no values are skipped and counted. Also written as Parquet stage 1
    (`$ETF_DATA_DIR/parquet/prices/`) with the problem statement's column names. Refuses to
    start when the disk lacks room for the new table and stage; if the disk fills anyway, the
    previous tables and stage stay and what the load wrote is removed.
    """
    root = _unpacked_dataset(settings)
    database = Path(warehouse.database)
    with (
        settings.cluster() as cluster,
        failing_clearly_on_full_disk(
            "loading price_volume_table and Parquet stage 1",
            [database.parent, settings.prices_stage],
            "price_volume_table, rejected_rows and Parquet stage 1 are as they were",
            warehouse=database,
            leftover_tables=[LOAD_TABLE],
        ),
    ):
        with warehouse.get_connection() as con:
            report = load_prices(con, root, settings.prices_stage, cluster=cluster)
            rejected_preview = query_markdown(
                con, f"SELECT * FROM {REJECTED_ROWS_TABLE} ORDER BY file, line_number LIMIT 20"
            )
            metadata = table_metadata(con, PRICE_VOLUME_TABLE)
    context.log.info(
        f"loaded {report.rows_loaded:,} rows of {report.symbols_with_rows:,} symbols; "
        f"rejected {report.rows_rejected:,} rows and {report.files_rejected:,} files; "
        f"skipped {report.blank_rows_skipped:,} blank rows"
    )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "symbols": report.symbols_with_rows,
            "files": report.files,
            "files_rejected": report.files_rejected,
            "rows_in_archive": report.rows_in_archive,
            "rows_rejected": report.rows_rejected,
            "blank_rows_skipped": report.blank_rows_skipped,
            "meta_rows_rejected": report.meta_rows_rejected,
            "files_without_meta": len(report.files_without_meta),
            "rejected_rows": dg.MetadataValue.md(rejected_preview),
            "parquet_stage": dg.MetadataValue.path(str(settings.prices_stage)),
            **(cluster.work.metadata() if cluster is not None else {}),
        }
    )


@dg.asset(
    name=SYMBOL_TABLE,
    metadata={"dagster/column_schema": SYMBOL_SCHEMA},
    deps=[PRICE_VOLUME_TABLE],
    group_name="ingest",
    kinds={"duckdb"},
)
def symbol_table(
    context: dg.AssetExecutionContext, settings: EtfSettings, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per symbol of `symbols_valid_meta.csv` (`symbol` = NASDAQ Symbol, the file name;
    `listing_symbol` = the meta Symbol, which is not unique) with its price coverage.

    Registers the `symbols` partitions of `features_table`: one key per symbol that has rows.
    """
    meta = read_symbols_meta(_unpacked_dataset(settings) / META_FILE)
    database = Path(warehouse.database)
    with (
        failing_clearly_on_full_disk(
            "writing symbol_table",
            [database.parent],
            "symbol_table is as it was",
            warehouse=database,
        ),
        warehouse.get_connection() as con,
    ):
        register_symbols_meta(con, meta)
        con.execute(sql.load("create_symbol_table"))
        symbols = {
            row[0]
            for row in con.execute(f"SELECT DISTINCT symbol FROM {PRICE_VOLUME_TABLE}").fetchall()
        }
        metadata = table_metadata(con, SYMBOL_TABLE)
        without_rows = con.execute(
            f"SELECT count(*) FROM {SYMBOL_TABLE} WHERE price_rows = 0"
        ).fetchone()[0]
    added, removed = sync_symbol_partitions(context.instance, symbols)
    context.log.info(f"symbols partitions: {len(symbols)} keys ({added} added, {removed} removed)")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "symbols_without_rows": without_rows,
            "meta_rows_rejected": len(meta.rejected),
            "partition_keys": len(symbols),
            "partition_keys_added": added,
            "partition_keys_removed": removed,
        }
    )
