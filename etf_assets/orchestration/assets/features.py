"""Stage 2: per-symbol rolling features in DuckDB (`features_table`) and Parquet stage 2."""

import warnings
from typing import Literal

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from etf_assets.constants import FEATURES_TABLE, PRICE_VOLUME_TABLE, SYMBOL_TABLE
from etf_assets.features.compute import BATCH_ROWS, write_features
from etf_assets.orchestration.metadata import sparklines, table_metadata
from etf_assets.orchestration.partitions import symbols_partitions
from etf_assets.orchestration.resources import EtfSettings

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
    is not recomputed.
    """
    symbols = list(context.partition_keys)
    context.log.info(f"computing features of {len(symbols)} symbols")
    with warehouse.get_connection() as con:
        report = write_features(
            con,
            symbols,
            settings.features_stage,
            config.method,
            batch_rows=config.batch_rows,
        )
        metadata = table_metadata(
            con,
            FEATURES_TABLE,
            preview_query=f"""SELECT symbol, date, volume, vol_moving_avg, adj_close,
                   adj_close_rolling_med FROM {FEATURES_TABLE}
                   WHERE symbol = (SELECT min(symbol) FROM requested_symbols)
                   ORDER BY date DESC LIMIT 5""",
        )
        metadata["volume_vs_moving_average"] = dg.MetadataValue.md(_volume_chart(con))
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "symbols_requested": report.symbols_requested,
            "symbols_computed": report.symbols_computed,
            "symbols_unchanged": report.symbols_requested - report.symbols_computed,
            "rows_computed": report.rows,
            "rows_per_second": round(report.rows / report.seconds) if report.seconds else 0,
            "rows_with_features": report.rows_with_features,
            "method": report.method,
            "parquet_stage": dg.MetadataValue.path(str(settings.features_stage)),
        }
    )


def _volume_chart(con: duckdb.DuckDBPyConnection, days: int = 60) -> str:
    """Volume against its moving average over the last `days` rows of the longest requested
    symbol, as sparklines."""
    rows = con.execute(
        f"""WITH target AS (
                SELECT symbol FROM {FEATURES_TABLE}
                WHERE symbol IN (SELECT symbol FROM requested_symbols)
                GROUP BY symbol ORDER BY count(*) DESC, symbol LIMIT 1)
            SELECT symbol, volume, vol_moving_avg FROM (
                SELECT * FROM {FEATURES_TABLE} WHERE symbol = (SELECT symbol FROM target)
                ORDER BY date DESC LIMIT {int(days)}) ORDER BY date"""
    ).fetchall()
    if not rows:
        return "_no rows_"
    chart = sparklines({"volume": [r[1] for r in rows], "vol_moving_avg": [r[2] for r in rows]})
    return f"**{rows[0][0]}**, last {len(rows)} trading days\n\n{chart}"
