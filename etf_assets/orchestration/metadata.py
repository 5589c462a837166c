"""Materialization metadata a person can read in the UI: counts, schema and a short preview."""

from __future__ import annotations

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
    """Row count, column schema and a five-row preview of `table` (a name from our constants)."""
    schema = con.execute(f"DESCRIBE {table}").fetchall()
    return {
        "dagster/row_count": con.execute(f"SELECT count(*) FROM {table}").fetchone()[0],
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=row[0], type=row[1]) for row in schema]
        ),
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
