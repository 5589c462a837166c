"""Parquet stages: written beside the live directory, then swapped in, so readers never see half."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb

from etf_assets import sql
from etf_assets.atomic_dir import new_pending


def quote_path(path: Path) -> str:
    """`path` as a DuckDB string literal (file names cannot be bound as parameters in COPY)."""
    return "'" + str(path).replace("'", "''") + "'"


def write_pending(con: duckdb.DuckDBPyConnection, query: str, stage_dir: Path) -> Path:
    """Write `query` as Parquet into a new folder beside `stage_dir` and return that folder."""
    pending = new_pending(stage_dir)
    con.execute(f"COPY ({query}) TO {quote_path(pending / 'part-0.parquet')} (FORMAT parquet)")
    return pending


def stage_query(table: str, extra_columns: tuple[str, ...] = ()) -> str:
    """SELECT of `table` (a fixed name) in the stage layout, with `extra_columns` appended."""
    extra = "".join(f",\n    {column}" for column in extra_columns)
    return sql.load("select_stage_columns").format(table=table, extra_columns=extra)


def replace_symbols(
    con: duckdb.DuckDBPyConnection, query: str, stage_dir: Path, symbols_table: str
) -> None:
    """Replace the rows of the symbols listed in `symbols_table` by the rows of `query`.

    Each call adds one file with its rows; files holding earlier rows of those symbols are
    rewritten without them (or removed). All new files are written before any is renamed in.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(str(path) for path in stage_dir.glob("*.parquet"))
    affected = []
    if existing:
        affected = [
            row[0]
            for row in con.execute(
                f"""SELECT DISTINCT filename FROM read_parquet($files, filename = true)
                    WHERE "Symbol" IN (SELECT symbol FROM {symbols_table})""",
                {"files": existing},
            ).fetchall()
        ]
    moves: list[tuple[Path, Path | None]] = []
    for name in affected:
        old = Path(name)
        kept = old.with_name(old.name + ".pending")
        con.execute(
            f"""COPY (SELECT * FROM read_parquet({quote_path(old)})
                      WHERE "Symbol" NOT IN (SELECT symbol FROM {symbols_table}))
                TO {quote_path(kept)} (FORMAT parquet)"""
        )
        moves.append((old, None if _drop_if_empty(con, kept) else kept))
    new_file = stage_dir / f"part-{uuid.uuid4().hex[:12]}.parquet"
    pending_new = new_file.with_name(new_file.name + ".pending")
    con.execute(f"COPY ({query}) TO {quote_path(pending_new)} (FORMAT parquet)")
    new_is_empty = _drop_if_empty(con, pending_new)
    for old, kept in moves:
        if kept is None:
            old.unlink()
        else:
            kept.replace(old)
    if not new_is_empty:
        pending_new.replace(new_file)


def _drop_if_empty(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """Delete the Parquet file at `path` if it has no rows; return whether it was deleted."""
    empty = con.execute(f"SELECT count(*) = 0 FROM read_parquet({quote_path(path)})").fetchone()[0]
    if empty:
        path.unlink()
    return empty
