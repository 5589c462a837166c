"""A deterministic, Kaggle-shaped archive of the stock-market dataset, for tests and benchmarks.

The same arguments give byte-identical files. By default the archive carries the quirks of the real
data that loaders must survive (see `Quirks`); `--no-quirks` gives a clean archive.

    python -m etf_assets.ingest.sample_archive --stocks 30 --etfs 20 --rows 1000 \
        --out data/sample.zip
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from etf_assets.constants import META_FILE, META_HEADER, PRICE_HEADER
from etf_assets.ingest import sql

# Real file stems whose names break naive parsing; UTX and UTX# share the meta Symbol "UTX".
QUIRK_STOCK_STEMS = {
    "NA": "NA",
    "LGF.B": "LGF.B",
    "CARR#": "CARR",
    "AGM-A": "AGM-A",
    "UTX": "UTX",
    "UTX#": "UTX",
}
SHORT_HISTORY_ROWS = 12
ZIP_TIMESTAMP = (2020, 4, 2, 0, 0, 0)
_NAME_WORDS = (
    "Atlas", "Harbor", "Summit", "Pioneer", "Granite", "Cedar", "Beacon", "Meridian", "Orchid",
    "Falcon", "Silver", "Northern", "Liberty", "Crescent", "Evergreen", "Keystone",
)  # fmt: skip


@dataclass(frozen=True)
class SampleSpec:
    """What to generate: symbol counts, mean rows per symbol, seed, and whether to add quirks."""

    stocks: int = 30
    etfs: int = 20
    rows: int = 1100
    seed: int = 42
    quirks: bool = True


@dataclass
class Quirks:
    """Which symbols carry which quirk; empty when the archive is generated without quirks."""

    blank_rows: str | None = None  # two rows with a date and no values; Volume written as floats
    bad_rows: str | None = None  # bad date, non-number, negative volume, duplicate date
    unreadable: str | None = None  # a file that is not text at all
    header_only: str | None = None
    meta_without_file: str | None = None
    file_without_meta: str | None = None
    short_history: str | None = None  # fewer rows than the feature window
    special_stems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Symbol:
    stem: str
    listing_symbol: str
    is_etf: bool
    n_rows: int
    base_price: float
    base_volume: float
    security_name: str


def _ticker(index: int) -> str:
    """A unique four-letter ticker per index (7919 is coprime with 26**4, so no collisions)."""
    code = (index * 7919 + 1234) % 26**4
    letters = []
    for _ in range(4):
        code, digit = divmod(code, 26)
        letters.append(chr(ord("A") + digit))
    return "".join(reversed(letters))


def _plan(spec: SampleSpec) -> tuple[list[_Symbol], Quirks]:
    rng = random.Random(spec.seed)
    use_quirks = spec.quirks and spec.stocks >= len(QUIRK_STOCK_STEMS) + 5 and spec.etfs >= 2
    stems: list[tuple[str, str, bool]] = []
    if use_quirks:
        stems += [(stem, listing, False) for stem, listing in QUIRK_STOCK_STEMS.items()]
    taken = {stem for stem, _, _ in stems}
    index = 0
    while len(stems) < spec.stocks + spec.etfs:
        ticker = _ticker(index)
        index += 1
        if ticker in taken:
            continue
        taken.add(ticker)
        stems.append((ticker, ticker, len(stems) >= spec.stocks))

    symbols = []
    for stem, listing, is_etf in stems:
        words = rng.sample(_NAME_WORDS, 2)
        name = (
            f"{words[0]} {words[1]} Select Sector ETF"
            if is_etf
            else f"{words[0]} {words[1]}{', Inc.' if rng.random() < 0.5 else ''} Common Stock"
        )
        symbols.append(
            _Symbol(
                stem=stem,
                listing_symbol=listing,
                is_etf=is_etf,
                n_rows=max(1, round(spec.rows * rng.uniform(0.25, 1.75))),
                base_price=rng.uniform(2, 300),
                base_volume=10 ** rng.uniform(3, 7),
                security_name=name,
            )
        )

    quirks = Quirks()
    if use_quirks:
        generic_stocks = [
            s.stem for s in symbols if not s.is_etf and s.stem not in QUIRK_STOCK_STEMS
        ]
        etfs = [s.stem for s in symbols if s.is_etf]
        quirks = Quirks(
            blank_rows=generic_stocks[0],
            bad_rows=generic_stocks[1],
            file_without_meta=generic_stocks[2],
            short_history=generic_stocks[3],
            unreadable=generic_stocks[4],
            header_only=etfs[0],
            meta_without_file=etfs[1],
            special_stems=list(QUIRK_STOCK_STEMS),
        )
        symbols = [
            _with_rows(s, SHORT_HISTORY_ROWS) if s.stem == quirks.short_history else s
            for s in symbols
        ]
    return symbols, quirks


def _with_rows(symbol: _Symbol, n_rows: int) -> _Symbol:
    return _Symbol(**{**symbol.__dict__, "n_rows": n_rows})


def _meta_rows(symbols: list[_Symbol], quirks: Quirks) -> list[list[str]]:
    rows = []
    for s in symbols:
        if s.stem == quirks.file_without_meta:
            continue
        etf_flag = "Y" if s.is_etf else "N"
        exchange = "P" if s.is_etf else "N"
        rows.append(
            ["Y", s.listing_symbol, s.security_name, exchange, " ", etf_flag, "100.0", "N", "",
             s.listing_symbol, s.stem, "N"]
        )  # fmt: skip
    return rows


def _write_prices(con: duckdb.DuckDBPyConnection, symbols: list[_Symbol], seed: int) -> None:
    con.execute(
        """CREATE OR REPLACE TEMP TABLE sample_symbols AS
           SELECT unnest($sid) AS sid, unnest($n_rows) AS n_rows,
                  unnest($base_price) AS base_price, unnest($base_volume) AS base_volume""",
        {
            "sid": list(range(len(symbols))),
            "n_rows": [s.n_rows for s in symbols],
            "base_price": [s.base_price for s in symbols],
            "base_volume": [s.base_volume for s in symbols],
        },
    )
    con.execute(sql.load("generate_sample_prices"), {"seed": seed})


def _copy_symbol_file(con: duckdb.DuckDBPyConnection, sid: int, path: Path) -> None:
    query = sql.load("write_sample_price_file").format(sid=int(sid))
    target = str(path).replace("'", "''")
    con.execute(f"COPY ({query}) TO '{target}' (FORMAT csv, HEADER)")


def _blank_and_float_volumes(path: Path) -> None:
    """Blank two rows' values (as on 2001-09-13 in HBAN.csv) and write Volume as floats."""
    header, *rows = path.read_text().splitlines()
    blank_at = {len(rows) // 3, 2 * len(rows) // 3}
    out = [header]
    for i, line in enumerate(rows):
        fields = line.split(",")
        out.append(
            f"{fields[0]},,,,,," if i in blank_at else ",".join(fields[:-1] + [fields[-1] + ".0"])
        )
    path.write_text("\n".join(out) + "\n")


def _add_bad_rows(path: Path) -> None:
    """Insert rows that break the schema: each must be rejected with its line number."""
    header, *rows = path.read_text().splitlines()
    dup = rows[len(rows) // 2]
    dup_fields = dup.split(",")
    bad = [
        "2020-13-45,1.0,1.0,1.0,1.0,1.0,100",  # unparseable date
        f"{rows[1].split(',')[0][:8]}00,1.0,1.0,1.0,n/a,1.0,100",  # day 00: unparseable date
        ",".join(dup_fields[:-1] + ["-500"]),  # negative volume (and a duplicate date)
        ",".join([dup_fields[0], "2.5", "abc", *dup_fields[3:]]),  # not a number, duplicate date
        dup,  # an exact duplicate: the later occurrence is rejected
    ]
    mid = len(rows) // 2 + 1
    path.write_text("\n".join([header, *rows[:mid], *bad, *rows[mid:]]) + "\n")


def _apply_file_quirks(root: Path, quirks: Quirks) -> None:
    if quirks.blank_rows:
        _blank_and_float_volumes(root / "stocks" / f"{quirks.blank_rows}.csv")
    if quirks.bad_rows:
        _add_bad_rows(root / "stocks" / f"{quirks.bad_rows}.csv")
    if quirks.unreadable:
        (root / "stocks" / f"{quirks.unreadable}.csv").write_bytes(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfa corrupt download\x00\n"
        )
    if quirks.header_only:
        (root / "etfs" / f"{quirks.header_only}.csv").write_text(PRICE_HEADER + "\n")


def generate_folder(spec: SampleSpec, root: Path) -> Quirks:
    """Write the unpacked archive (meta file, stocks/, etfs/) into `root` and return its quirks."""
    symbols, quirks = _plan(spec)
    for sub in ("stocks", "etfs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    with open(root / META_FILE, "w", newline="", encoding="utf-8") as meta:
        meta.write(META_HEADER + "\n")
        csv.writer(meta, lineterminator="\n").writerows(_meta_rows(symbols, quirks))

    con = duckdb.connect()
    try:
        _write_prices(con, symbols, spec.seed)
        for sid, s in enumerate(symbols):
            if s.stem == quirks.meta_without_file:
                continue
            _copy_symbol_file(con, sid, root / ("etfs" if s.is_etf else "stocks") / f"{s.stem}.csv")
    finally:
        con.close()
    _apply_file_quirks(root, quirks)
    return quirks


def zip_folder(root: Path, archive: Path, compresslevel: int = 1) -> None:
    """Zip an unpacked archive the way Kaggle lays it out, with fixed timestamps."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as src, zf.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    partial.replace(archive)


def generate_zip(spec: SampleSpec, archive: Path) -> Quirks:
    """Write the archive as a zip file at `archive` and return its quirks."""
    with tempfile.TemporaryDirectory(
        dir=archive.parent if archive.parent.exists() else None
    ) as tmp:
        quirks = generate_folder(spec, Path(tmp))
        zip_folder(Path(tmp), archive)
    return quirks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stocks", type=int, default=SampleSpec.stocks)
    parser.add_argument("--etfs", type=int, default=SampleSpec.etfs)
    parser.add_argument("--rows", type=int, default=SampleSpec.rows, help="mean rows per symbol")
    parser.add_argument("--seed", type=int, default=SampleSpec.seed)
    parser.add_argument("--no-quirks", dest="quirks", action="store_false")
    parser.add_argument("--out", type=Path, required=True, help="a .zip file, or a folder")
    args = parser.parse_args(argv)
    spec = SampleSpec(args.stocks, args.etfs, args.rows, args.seed, args.quirks)
    if args.out.suffix == ".zip":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        quirks = generate_zip(spec, args.out)
    else:
        quirks = generate_folder(spec, args.out)
    print(f"wrote {args.out}: {spec}")
    if spec.quirks:
        print(f"quirks: {quirks}")


if __name__ == "__main__":
    main()
