"""Read `symbols_valid_meta.csv`: one row per NASDAQ Symbol, with the rows that cannot load."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import duckdb

from etf_assets.constants import META_FILE, META_HEADER

META_COLUMNS = META_HEADER.split(",")
# snake_case names of the meta columns in `symbol_table`, in file order.
SYMBOL_TABLE_COLUMNS = (
    "nasdaq_traded", "listing_symbol", "security_name", "listing_exchange", "market_category",
    "etf", "round_lot_size", "test_issue", "financial_status", "cqs_symbol", "symbol",
    "next_shares",
)  # fmt: skip


class MetaFileError(ValueError):
    """The meta file is missing or is not the dataset's meta file."""


@dataclass(frozen=True)
class Rejected:
    file: str
    line_number: int | None
    reason: str
    content: str | None = None


@dataclass
class SymbolsMeta:
    rows: list[tuple[int, list[str]]]  # (line number, fields in META_COLUMNS order)
    rejected: list[Rejected]


def read_symbols_meta(path: Path) -> SymbolsMeta:
    """Parse the meta file; the first row of a NASDAQ Symbol wins, later ones are rejected."""
    if not path.is_file():
        raise MetaFileError(f"{META_FILE} is missing from the archive (looked for {path})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MetaFileError(f"{META_FILE} is not UTF-8 text: {exc}") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header != META_COLUMNS:
        raise MetaFileError(f"{META_FILE}: header is {header!r}, expected {META_HEADER!r}")

    symbol_index = META_COLUMNS.index("NASDAQ Symbol")
    first_line: dict[str, int] = {}
    meta = SymbolsMeta(rows=[], rejected=[])
    for fields in reader:
        line = reader.line_num
        if not fields:
            continue
        problem = None
        if len(fields) != len(META_COLUMNS):
            problem = f"expected {len(META_COLUMNS)} fields, found {len(fields)}"
        elif not fields[symbol_index].strip():
            problem = "NASDAQ Symbol: missing value"
        elif fields[symbol_index] in first_line:
            problem = (
                f"NASDAQ Symbol: duplicate {fields[symbol_index]!r} "
                f"(first seen on line {first_line[fields[symbol_index]]})"
            )
        if problem:
            meta.rejected.append(Rejected(META_FILE, line, problem, ",".join(fields)))
            continue
        first_line[fields[symbol_index]] = line
        meta.rows.append((line, fields))
    return meta


def register_symbols_meta(con: duckdb.DuckDBPyConnection, meta: SymbolsMeta) -> None:
    """Expose the meta rows as the temp table `symbols_meta` (all VARCHAR, snake_case)."""
    columns = {
        name: [fields[i] for _, fields in meta.rows] for i, name in enumerate(SYMBOL_TABLE_COLUMNS)
    }
    selects = ", ".join(f"unnest(${name}) AS {name}" for name in SYMBOL_TABLE_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE symbols_meta AS SELECT {selects}", columns)
