"""Materialization metadata a person can read in the UI: counts, schema and a short preview."""

from __future__ import annotations

import base64
import io
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


def volume_chart_markdown(symbol: str, rows: list[tuple]) -> str:
    """Volume and its 30-row moving average over `rows` (date, volume, vol_moving_avg) as a PNG
    in markdown: the UI's metadata dialog renders it as a picture."""
    import matplotlib.dates as mdates  # matplotlib only where a chart is drawn
    from matplotlib.figure import Figure

    dates = [row[0] for row in rows]
    figure = Figure(figsize=(7.5, 3.0), dpi=100, layout="constrained")
    ax = figure.subplots()
    ax.bar(dates, [row[1] for row in rows], width=1.0, color="#9ab8d8", label="volume")
    ax.plot(dates, [row[2] for row in rows], color="#d35400", linewidth=2, label="vol_moving_avg")
    ax.set(title=f"{symbol}: volume and its 30-day moving average", ylabel="shares")
    ax.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.legend(loc="upper left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    caption = f"**{symbol}**, last {len(rows)} trading days"
    return f"{caption}\n\n![{symbol} volume and moving average](data:image/png;base64,{encoded})"


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
