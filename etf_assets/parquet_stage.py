"""Parquet stages: written beside the live directory, then swapped in, so readers never see half."""

from __future__ import annotations

from pathlib import Path

import duckdb

from etf_assets.atomic_dir import new_pending


def quote_path(path: Path) -> str:
    """`path` as a DuckDB string literal (file names cannot be bound as parameters in COPY)."""
    return "'" + str(path).replace("'", "''") + "'"


def write_pending(con: duckdb.DuckDBPyConnection, query: str, stage_dir: Path) -> Path:
    """Write `query` as Parquet into a new folder beside `stage_dir` and return that folder."""
    pending = new_pending(stage_dir)
    con.execute(f"COPY ({query}) TO {quote_path(pending / 'part-0.parquet')} (FORMAT parquet)")
    return pending
