"""Data-quality rules, run with their assets and shown in the UI. The blocking ones stop
downstream assets of the same run (poly_model) from using a broken table."""

from pathlib import Path

import dagster as dg
import duckdb

from etf_assets.constants import FEATURES_TABLE, PRICE_VOLUME_TABLE
from etf_assets.features import sql as features_sql
from etf_assets.ingest import sql as ingest_sql
from etf_assets.orchestration.resources import EtfSettings, Warehouse
from etf_assets.storage.stored_order import count_repeated_keys


def _named_counts(con: duckdb.DuckDBPyConnection, query: str) -> dict[str, int]:
    result = con.execute(query)
    return dict(zip([d[0] for d in result.description], result.fetchone(), strict=True))


def _stage_rows(con: duckdb.DuckDBPyConnection, stage: Path) -> int:
    if not any(stage.glob("*.parquet")):
        return 0
    return con.execute(
        "SELECT count(*) FROM read_parquet($files)",
        {"files": [str(p) for p in sorted(stage.glob("*.parquet"))]},
    ).fetchone()[0]


def _stage_matches(con: duckdb.DuckDBPyConnection, table: str, stage: Path) -> dg.AssetCheckResult:
    table_rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    stage_rows = _stage_rows(con, stage)
    return dg.AssetCheckResult(
        passed=table_rows == stage_rows,
        metadata={"table_rows": table_rows, "parquet_rows": stage_rows, "stage": str(stage)},
    )


@dg.asset_check(asset=PRICE_VOLUME_TABLE, blocking=True)
def unique_symbol_date(warehouse: Warehouse) -> dg.AssetCheckResult:
    """At most one row per (symbol, date)."""
    with warehouse.get_connection() as con:
        duplicates = count_repeated_keys(con, PRICE_VOLUME_TABLE)
    return dg.AssetCheckResult(passed=duplicates == 0, metadata={"duplicate_keys": duplicates})


@dg.asset_check(asset=PRICE_VOLUME_TABLE, blocking=True)
def no_null_keys(warehouse: Warehouse) -> dg.AssetCheckResult:
    """No row without a symbol or a date."""
    with warehouse.get_connection() as con:
        nulls = con.execute(
            f"SELECT count(*) FROM {PRICE_VOLUME_TABLE} WHERE symbol IS NULL OR date IS NULL"
        ).fetchone()[0]
    return dg.AssetCheckResult(passed=nulls == 0, metadata={"rows_with_null_keys": nulls})


@dg.asset_check(asset=PRICE_VOLUME_TABLE)
def ohlc_sanity(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Counts rows where low > open/close, open/close > high or volume < 0. Real data breaks
    these (Open is 0.0 in early years of several files), so they are reported, not failed."""
    with warehouse.get_connection() as con:
        counts = _named_counts(con, ingest_sql.load("count_ohlc_violations"))
    broken = sum(v for k, v in counts.items() if k != "rows")
    return dg.AssetCheckResult(
        passed=True,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**counts, "violations": broken},
        description=f"{broken:,} rule violations in {counts['rows']:,} rows",
    )


@dg.asset_check(asset=PRICE_VOLUME_TABLE)
def prices_stage_matches_table(settings: EtfSettings, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Parquet stage 1 has as many rows as `price_volume_table`."""
    with warehouse.get_connection() as con:
        return _stage_matches(con, PRICE_VOLUME_TABLE, settings.prices_stage)


@dg.asset_check(asset=FEATURES_TABLE, blocking=True)
def every_symbol_has_features(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Every symbol with price rows has exactly as many feature rows."""
    with warehouse.get_connection() as con:
        missing = con.execute(features_sql.load("find_symbols_without_features")).fetchall()
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={
            "symbols_with_wrong_feature_rows": len(missing),
            "first_ones": dg.MetadataValue.json(
                [{"symbol": s, "price_rows": p, "feature_rows": f} for s, p, f in missing[:10]]
            ),
        },
    )


@dg.asset_check(asset=FEATURES_TABLE, blocking=True)
def first_29_rows_are_null(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Both features are NULL for each symbol's first 29 rows and present from row 30 on."""
    with warehouse.get_connection() as con:
        result = con.execute(features_sql.load("find_feature_window_violations"))
        columns = [d[0] for d in result.description]
        breaking = [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
    return dg.AssetCheckResult(
        passed=not breaking,
        metadata={
            "symbols_breaking_the_rule": len(breaking),
            "first_ones": dg.MetadataValue.json(breaking[:10]),
        },
    )


@dg.asset_check(asset=FEATURES_TABLE)
def features_stage_matches_table(
    settings: EtfSettings, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Parquet stage 2 has as many rows as `features_table`."""
    with warehouse.get_connection() as con:
        return _stage_matches(con, FEATURES_TABLE, settings.features_stage)


ALL_CHECKS = [
    unique_symbol_date,
    no_null_keys,
    ohlc_sanity,
    prices_stage_matches_table,
    every_symbol_has_features,
    first_29_rows_are_null,
    features_stage_matches_table,
]


def failed_blocking_checks(instance: dg.DagsterInstance, asset: str) -> list[str]:
    """Names of the blocking checks on `asset` whose latest evaluation failed."""
    failed = []
    for check in ALL_CHECKS:
        for spec in check.check_specs:
            if spec.asset_key != dg.AssetKey(asset) or not spec.blocking:
                continue
            record = instance.get_latest_asset_check_evaluation_record(spec.key)
            if record is not None and record.status.value == "FAILED":
                failed.append(spec.name)
    return failed
