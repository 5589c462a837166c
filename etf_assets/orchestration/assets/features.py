"""Stage 2: per-symbol rolling features in DuckDB (`features_table`) and Parquet stage 2."""

import datetime as dt
import warnings
from pathlib import Path
from typing import Literal

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from etf_assets.constants import FEATURES_TABLE, PRICE_VOLUME_TABLE, SYMBOL_TABLE
from etf_assets.features.compute import BATCH_ROWS, write_features
from etf_assets.features.summary import SymbolSummary, symbol_summaries
from etf_assets.orchestration.disk_guard import failing_clearly_on_full_disk
from etf_assets.orchestration.metadata import (
    add_partition_metadata,
    query_markdown,
    volume_chart_markdown,
)
from etf_assets.orchestration.partitions import symbols_partitions
from etf_assets.orchestration.resources import EtfSettings
from etf_assets.orchestration.schemas import FEATURES_SCHEMA

# Single-run backfills are what makes a backfill of 8,000 symbols one SQL pass; the flag is beta.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)


class FeaturesConfig(dg.Config):
    """How the features are computed; the defaults suit every scale."""

    method: Literal["auto", "sql", "kernel"] = Field(
        default="auto",
        description="`sql`: the window SQL that defines the features; `kernel`: the same values "
        "computed in numpy; `auto`: the kernel for large runs, the SQL for small ones.",
    )
    batch_rows: int = Field(
        default=BATCH_ROWS,
        gt=0,
        description="About how many rows are computed, inserted and staged at once; bounds memory.",
    )


@dg.asset(
    name=FEATURES_TABLE,
    metadata={"dagster/column_schema": FEATURES_SCHEMA},
    deps=[PRICE_VOLUME_TABLE, SYMBOL_TABLE],
    partitions_def=symbols_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="features",
    kinds={"duckdb", "parquet"},
)
def features_table(
    context: dg.AssetExecutionContext,
    config: FeaturesConfig,
    settings: EtfSettings,
    warehouse: DuckDBResource,
) -> dg.MaterializeResult:
    """`price_volume_table` plus two features per symbol, over the 30 most recent rows
    including the current one (NULL for each symbol's first 29 rows):

    - `vol_moving_avg`: mean of `volume`;
    - `adj_close_rolling_med`: median of `adj_close` (mean of the two middle values).

    One partition per symbol; a backfill of many symbols is one run. Writing partitions replaces
    exactly those symbols' rows here and in Parquet stage 2 (`$ETF_DATA_DIR/parquet/features/`);
    a symbol whose prices have not changed since its features were computed (same content hash)
    is not recomputed. Refuses to start when the disk lacks room for the new rows; if the disk
    fills anyway, the table and stage stay as they were and what the run wrote is removed.
    """
    symbols = list(context.partition_keys)
    context.log.info(f"computing features of {len(symbols)} symbols")
    database = Path(warehouse.database)
    with (
        settings.cluster() as cluster,
        failing_clearly_on_full_disk(
            "computing features_table and Parquet stage 2",
            [database.parent, settings.features_stage],
            "features_table and Parquet stage 2 are as they were",
            warehouse=database,
        ),
        warehouse.get_connection() as con,
    ):
        report = write_features(
            con,
            symbols,
            settings.features_stage,
            config.method,
            batch_rows=config.batch_rows,
            cluster=cluster,
            prices_stage=settings.prices_stage,
        )
        summaries = symbol_summaries(con, symbols)
        shown = max(symbols, key=lambda symbol: (summaries[symbol].rows, symbol))
        run_facts = {
            "table_rows": con.execute(f"SELECT count(*) FROM {FEATURES_TABLE}").fetchone()[0],
            "preview": dg.MetadataValue.md(
                query_markdown(
                    con,
                    f"""SELECT symbol, date, volume, vol_moving_avg, adj_close,
                        adj_close_rolling_med FROM {FEATURES_TABLE}
                        WHERE symbol = $symbol ORDER BY date DESC LIMIT 5""",
                    {"symbol": shown},
                )
            ),
            "volume_vs_moving_average": dg.MetadataValue.md(_volume_chart(con, shown)),
        }
    # Each partition's materialization carries its own symbol's facts; what the run as a whole
    # did is recorded once, as an observation of the table, not repeated in every partition.
    add_partition_metadata(
        context, {symbol: _partition_metadata(summaries[symbol]) for symbol in symbols}
    )
    context.log_event(
        dg.AssetObservation(
            asset_key=context.asset_key,
            metadata={
                **run_facts,
                "symbols_requested": report.symbols_requested,
                "symbols_computed": report.symbols_computed,
                "symbols_unchanged": report.symbols_requested - report.symbols_computed,
                "rows_computed": report.rows,
                "rows_per_second": round(report.rows / report.seconds) if report.seconds else 0,
                "rows_with_features": report.rows_with_features,
                "method": report.method,
                "parquet_stage": dg.MetadataValue.path(str(settings.features_stage)),
                **(cluster.work.metadata() if cluster is not None else {}),
            },
        )
    )
    return dg.MaterializeResult()


def _partition_metadata(summary: SymbolSummary) -> dict[str, object]:
    def day(value: dt.date | None) -> str:
        return value.isoformat() if value else ""

    return {
        "dagster/row_count": summary.rows,
        "first_date": day(summary.first_date),
        "last_date": day(summary.last_date),
        "rows_with_features": summary.rows_with_features,
        "last_vol_moving_avg": dg.MetadataValue.float(summary.last_vol_moving_avg)
        if summary.last_vol_moving_avg is not None
        else dg.MetadataValue.null(),
        "last_adj_close_rolling_med": dg.MetadataValue.float(summary.last_adj_close_rolling_med)
        if summary.last_adj_close_rolling_med is not None
        else dg.MetadataValue.null(),
    }


def _volume_chart(con: duckdb.DuckDBPyConnection, symbol: str, days: int = 120) -> str:
    """Volume against its moving average over the last `days` rows of `symbol`."""
    rows = con.execute(
        f"""SELECT date, volume, vol_moving_avg FROM (
                SELECT * FROM {FEATURES_TABLE} WHERE symbol = $symbol
                ORDER BY date DESC LIMIT {int(days)}) ORDER BY date""",
        {"symbol": symbol},
    ).fetchall()
    if not rows:
        return "_no rows_"
    return volume_chart_markdown(symbol, rows)
