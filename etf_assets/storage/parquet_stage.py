"""Parquet stages: written beside the live directory, then swapped in, so readers never see half."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import duckdb

from etf_assets.storage import sql
from etf_assets.storage.atomic_dir import new_pending
from etf_assets.storage.session_settings import rows_in_any_order

# Parquet 2 encodings (delta, byte-stream-split) and no dictionaries but for ENUM columns (see
# sql/create_stage_lookups.sql): prices and volumes hardly repeat, so dictionaries cost time
# and save no space, while delta and byte-stream-split encodings help them compress. The stage is
# smaller and faster to write than with DuckDB's defaults (figures in benchmarks/README.md).
WRITE_OPTIONS = "FORMAT parquet, PARQUET_VERSION V2, DICTIONARY_SIZE_LIMIT 1"


def quote_path(path: Path) -> str:
    """`path` as a DuckDB string literal (file names cannot be bound as parameters in COPY)."""
    return "'" + str(path).replace("'", "''") + "'"


def copy_to_parquet(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """Write the rows of `query` to the Parquet file `path`."""
    with rows_in_any_order(con):
        con.execute(f"COPY ({query}) TO {quote_path(path)} ({WRITE_OPTIONS})")


def define_stage_rows(con: duckdb.DuckDBPyConnection) -> None:
    """The table macro `stage_rows(files)` in `con`: stage files read as the tables' rows."""
    con.execute(sql.load("create_stage_rows_macro"))


def write_pending(
    con: duckdb.DuckDBPyConnection, table: str, symbols: str, key: str, stage_dir: Path
) -> Path:
    """Write the rows of `table` as Parquet into a new folder beside `stage_dir`; return it.

    See `copy_stage_rows` for `symbols` and `key`. If the write fails, the folder is removed: the
    caller never learns its name.
    """
    pending = new_pending(stage_dir)
    try:
        copy_stage_rows(con, table, symbols, key, pending / "part-0.parquet")
    except BaseException:
        shutil.rmtree(pending, ignore_errors=True)
        raise
    return pending


def copy_stage_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    symbols: str,
    key: str,
    path: Path,
    extra_columns: tuple[str, ...] = (),
) -> None:
    """Write the rows of `table` in the stage layout to the Parquet file `path`, with
    `extra_columns` appended.

    The rows carry an integer `key` column in place of their symbol and security name, which the
    table `symbols` holds for each key: joining 28 million rows on an integer is cheaper than on
    the two strings. All four names are fixed names, never input.
    """
    con.execute(sql.load("create_stage_lookups").format(symbols=symbols, key=key, table=table))
    extra = "".join(f",\n    p.{column}" for column in extra_columns)
    query = sql.load("select_stage_columns").format(table=table, key=key, extra_columns=extra)
    copy_to_parquet(con, query, path)


class SymbolReplacement:
    """Replace the stage rows of the symbols listed in a table by new files, all at once.

    Callers write the new rows to paths from `new_file`; `prepare` then writes what must be
    rewritten (files that also hold other symbols' rows, without the replaced rows), which is the
    last step that needs disk space, and `publish` swaps everything in by renames and removals.
    Leaving the `with` block by an exception before `publish` discards every new file.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, stage_dir: Path, symbols_table: str):
        self._con = con
        self._stage_dir = stage_dir
        self._symbols_table = symbols_table  # a fixed name, never input
        self._new_files: list[Path] = []
        self._moves: list[tuple[Path, Path | None]] = []

    def __enter__(self) -> SymbolReplacement:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.discard()

    def discard(self) -> None:
        """Remove every file written for the replacement; the stage stays as it was."""
        for path in [*self._new_files, *(kept for _, kept in self._moves if kept is not None)]:
            path.unlink(missing_ok=True)
        self._new_files, self._moves = [], []

    def new_file(self) -> Path:
        """A pending path for one more file of new rows."""
        self._stage_dir.mkdir(parents=True, exist_ok=True)
        path = self._stage_dir / f"part-{uuid.uuid4().hex[:12]}.parquet.pending"
        self._new_files.append(path)
        return path

    def prepare(self) -> None:
        """Write the rewritten files beside the ones they replace; nothing is swapped yet."""
        for old, rows_kept in self._files_with_replaced_rows():
            if rows_kept == 0:
                self._moves.append((old, None))
                continue
            kept = old.with_name(old.name + ".pending")
            self._moves.append((old, kept))
            copy_to_parquet(
                self._con,
                f"""SELECT * FROM read_parquet({quote_path(old)})
                    WHERE "Symbol" NOT IN (SELECT symbol FROM {self._symbols_table})""",
                kept,
            )

    def publish(self) -> None:
        """Swap the prepared files in: renames and removals, which need no disk space."""
        for old, kept in self._moves:
            if kept is None:
                old.unlink()
            else:
                kept.replace(old)
        for new in self._new_files:
            new.replace(new.with_suffix(""))  # drops ".pending"
        self._new_files, self._moves = [], []

    def _files_with_replaced_rows(self) -> list[tuple[Path, int]]:
        """The live files holding rows of the symbols, with how many rows of others they hold."""
        existing = sorted(str(path) for path in self._stage_dir.glob("*.parquet"))
        if not existing:
            return []
        return [
            (Path(name), kept)
            for name, kept in self._con.execute(
                sql.load("find_stage_files_to_replace").format(symbols_table=self._symbols_table),
                {"files": existing},
            ).fetchall()
        ]


def remove_pending_files(stage_dir: Path) -> None:
    """Remove the pending files that a replacement killed half-way left in `stage_dir`.

    Only while no replacement is running (the features step holds the warehouse's write lock
    while it writes stage 2): readers of `*.parquet` never see them, but they take disk space.
    """
    for path in stage_dir.glob("*.pending"):
        path.unlink(missing_ok=True)


def largest_files_bytes(stage_dir: Path, count: int) -> int:
    """The bytes of the `count` largest Parquet files of `stage_dir`."""
    sizes = sorted((p.stat().st_size for p in stage_dir.glob("*.parquet")), reverse=True)
    return sum(sizes[:count])
