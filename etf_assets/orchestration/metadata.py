"""Materialization metadata a person can read in the UI: counts, schema and a short preview."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import duckdb

from etf_assets.markdown import markdown_table


def query_markdown(con: duckdb.DuckDBPyConnection, query: str, params: object = None) -> str:
    """The result of a (small) query as a markdown table."""
    result = con.execute(query, params)
    return markdown_table([d[0] for d in result.description], result.fetchall())


def table_metadata(
    con: duckdb.DuckDBPyConnection, table: str, preview_query: str | None = None
) -> dict[str, object]:
    """Row count and a five-row preview of `table` (a name from our constants); the column
    schema is the asset's definition metadata (`etf_assets.orchestration.schemas`)."""
    return {
        "dagster/row_count": con.execute(f"SELECT count(*) FROM {table}").fetchone()[0],
        "preview": dg.MetadataValue.md(
            query_markdown(con, preview_query or f"SELECT * FROM {table} LIMIT 5")
        ),
    }


_BARS = "▁▂▃▄▅▆▇█"


def sparklines(series: dict[str, list[float | None]]) -> str:
    """Unicode sparklines of several series on one shared scale, as a markdown code block."""
    values = [v for line in series.values() for v in line if v is not None]
    if not values:
        return "_no values_"
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    width = max(len(name) for name in series)
    lines = [
        f"{name:<{width}}  "
        + "".join(
            " " if v is None else _BARS[int((v - low) / span * (len(_BARS) - 1))] for v in line
        )
        for name, line in series.items()
    ]
    return "```\n" + "\n".join(lines) + f"\n{'':<{width}}  scale {low:,.0f} .. {high:,.0f}\n```"


def add_partition_metadata(
    context: dg.AssetExecutionContext, metadata_by_key: Mapping[str, Mapping[str, object]]
) -> None:
    """Give each partition materialized by this run its own metadata.

    `context.add_asset_metadata(partition_key=...)` reads every partition key from the instance
    to check the one it is given, so calling it for thousands of partitions is quadratic. The keys
    checked here are the run's own; they go into the step's metadata in one step, through the
    structure that `add_asset_metadata` fills. Where Dagster's internals are not as expected,
    the public call is used, slower but the same.
    """
    keys = set(context.partition_keys)
    if unknown := sorted(set(metadata_by_key) - keys)[:5]:
        raise ValueError(f"partitions not materialized by this run: {unknown}")
    step = context.get_step_execution_context()
    accumulator = getattr(step, "_metadata_accumulator", None)
    try:
        from dagster._core.execution.context.metadata_logging import (
            AssetMetadataHandle,
            OutputMetadataAccumulator,
        )
    except ImportError:
        accumulator = None
    if not isinstance(accumulator, OutputMetadataAccumulator):
        for key, metadata in metadata_by_key.items():
            context.add_asset_metadata(metadata, partition_key=key)
        return
    asset_key = context.asset_key
    step._metadata_accumulator = OutputMetadataAccumulator(  # noqa: SLF001
        per_output_metadata={
            **accumulator.per_output_metadata,
            **{
                AssetMetadataHandle(asset_key=asset_key, partition_key=key): {
                    **accumulator.per_output_metadata.get(
                        AssetMetadataHandle(asset_key=asset_key, partition_key=key), {}
                    ),
                    **metadata,
                }
                for key, metadata in metadata_by_key.items()
            },
        }
    )
