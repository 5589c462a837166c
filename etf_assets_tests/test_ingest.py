"""raw_zip, price_volume_table and symbol_table on real and generated archives, through real
Dagster materializations into a real DuckDB file, checked against an independent oracle."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from etf_assets.ingest.sample_archive import SampleSpec, generate_folder
from etf_assets.orchestration.resources import Warehouse
from etf_assets_tests.conftest import STAGE_ARROW_TYPES, zip_folder_plain
from etf_assets_tests.oracle import read_expected

STAGE_TYPES = [
    ("Symbol", "VARCHAR"), ("Security Name", "VARCHAR"), ("Date", "VARCHAR"), ("Open", "DOUBLE"),
    ("High", "DOUBLE"), ("Low", "DOUBLE"), ("Close", "DOUBLE"), ("Adj Close", "DOUBLE"),
    ("Volume", "BIGINT"),
]  # fmt: skip
TABLE_TYPES = [
    ("symbol", "VARCHAR"), ("security_name", "VARCHAR"), ("date", "DATE"), ("open", "DOUBLE"),
    ("high", "DOUBLE"), ("low", "DOUBLE"), ("close", "DOUBLE"), ("adj_close", "DOUBLE"),
    ("volume", "BIGINT"),
]  # fmt: skip


def loaded_rows(pipeline) -> dict:
    rows = pipeline.query(
        "SELECT symbol, date, open, high, low, close, adj_close, volume FROM price_volume_table"
    )
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def metadata_of(result, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [key]]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_excerpt_every_row_accounted_for(excerpt_dir: Path, pipeline_factory) -> None:
    pipeline = pipeline_factory(excerpt_dir)
    result = pipeline.ingest()
    assert result.success
    expected = read_expected(excerpt_dir)

    assert loaded_rows(pipeline) == expected.rows
    assert pipeline.query("SELECT count(*) FROM price_volume_table")[0][0] == len(expected.rows)
    assert expected.blank_rows == 1  # HBAN 2001-09-13
    assert not pipeline.query(
        "SELECT * FROM price_volume_table WHERE symbol = 'HBAN' AND date = DATE '2001-09-13'"
    )
    meta = metadata_of(result, "price_volume_table")
    assert meta["blank_rows_skipped"] == 1
    assert meta["rows_rejected"] == 0
    assert (
        meta["dagster/row_count"] + meta["rows_rejected"] + meta["blank_rows_skipped"]
        == (meta["rows_in_archive"])
        == expected.data_lines
        == 25_818
    )
    # The macOS folder file that came with the archive is rejected whole, and said so.
    assert expected.rejected_files == {"stocks/.DS_Store.csv"}
    assert meta["files_rejected"] == 1
    assert pipeline.query("SELECT file, line_number, reason FROM rejected_rows") == [
        ("stocks/.DS_Store.csv", None, "not UTF-8 text")
    ]
    # Dates before 1970 (IP starts on the dataset's first day) load as they are.
    assert pipeline.query("SELECT min(date) FROM price_volume_table WHERE symbol = 'IP'") == [
        (date(1962, 1, 2),)
    ]
    # Open 0.0 is a real price; float-written volumes are whole numbers.
    assert pipeline.query(
        "SELECT open, volume FROM price_volume_table WHERE symbol = 'HBAN' AND date = '1980-03-17'"
    ) == [(0.0, 14800)]
    assert [d[1] for d in pipeline.query("DESCRIBE price_volume_table")] == [
        t for _, t in TABLE_TYPES
    ]


def test_excerpt_symbol_table_and_partitions(excerpt_dir: Path, pipeline_factory) -> None:
    pipeline = pipeline_factory(excerpt_dir)
    assert pipeline.ingest().success
    assert pipeline.query("SELECT count(*), count(DISTINCT symbol) FROM symbol_table") == [(15, 15)]
    assert sorted(
        pipeline.query(
            "SELECT symbol, listing_symbol FROM symbol_table WHERE listing_symbol = 'UTX'"
        )
    ) == [("UTX", "UTX"), ("UTX#", "UTX")]
    assert pipeline.query(
        "SELECT symbol, is_etf, price_rows FROM symbol_table WHERE symbol IN ('AAAU', 'LGF.B') "
        "ORDER BY symbol"
    ) == [("AAAU", True, 410), ("LGF.B", False, 0)]
    with_rows = {r[0] for r in pipeline.query("SELECT DISTINCT symbol FROM price_volume_table")}
    assert set(pipeline.instance.get_dynamic_partitions("symbols")) == with_rows
    assert with_rows == {"AAAU", "AACG", "HBAN", "IP", "VSGX"}


def test_sample_quirks_land_where_design_says(sample_dir: Path, pipeline_factory, tmp_path) -> None:
    archive = zip_folder_plain(sample_dir, tmp_path / "sample.zip")
    pipeline = pipeline_factory(archive)
    result = pipeline.ingest()
    assert result.success
    expected = read_expected(sample_dir)
    assert loaded_rows(pipeline) == expected.rows

    rejected = pipeline.query("SELECT file, line_number, reason FROM rejected_rows")
    assert {(f, n) for f, n, _ in rejected if n is not None} == expected.rejected_lines
    assert {f for f, n, _ in rejected if n is None} == expected.rejected_files
    assert len(expected.rejected_lines) == 5 and len(expected.rejected_files) == 1
    reasons = " | ".join(r for _, _, r in rejected)
    for words in (
        "Date: not a date",
        "Volume: negative",
        "High: not a number",
        "duplicate date",
        "not UTF-8 text",
    ):
        assert words in reasons

    meta = metadata_of(result, "price_volume_table")
    assert meta["rows_in_archive"] == expected.data_lines
    assert meta["dagster/row_count"] + meta["rows_rejected"] + meta["blank_rows_skipped"] == (
        expected.data_lines
    )
    assert meta["blank_rows_skipped"] == expected.blank_rows == 2

    symbols = pipeline.query("SELECT symbol, price_rows FROM symbol_table")
    by_symbol = dict(symbols)
    for stem in ("NA", "LGF.B", "CARR#", "AGM-A", "UTX", "UTX#"):
        assert by_symbol[stem] > 0, stem
    assert pipeline.query(
        "SELECT count(*) FROM price_volume_table WHERE symbol IS NULL OR date IS NULL"
    ) == [(0,)]
    orphans = pipeline.query(
        "SELECT DISTINCT symbol, security_name FROM price_volume_table WHERE security_name IS NULL"
    )
    assert len(orphans) == 1 and orphans[0][0] not in by_symbol  # a file without a meta row
    assert sorted(s for s, n in symbols if n == 0) == sorted(
        {s for s in expected.meta_names} - expected.symbols_with_rows()
    )
    assert set(pipeline.instance.get_dynamic_partitions("symbols")) == expected.symbols_with_rows()


IRREGULAR_FILES = {
    # Each file breaks one rule the typed scan cannot see, or looks odd but is valid.
    "FRAC": ["2020-01-02,1,2,0.5,1.5,1.5,100", "2020-01-03,1,2,0.5,1.5,1.5,100.5",
             "2020-01-06,1,2,0.5,1.5,1.5,14800.0"],
    "DUPE": ["2020-01-02,1,2,0.5,1.5,1.5,100", "2020-01-03,1,2,0.5,1.5,1.5,200",
             "2020-01-03,1,2,0.5,1.5,1.5,300", "2020-01-06,1,2,0.5,1.5,1.5,400"],
    "DESC": ["2020-01-06,1,2,0.5,1.5,1.5,100", "2020-01-03,1,2,0.5,1.5,1.5,200",
             "2020-01-02,1,2,0.5,1.5,1.5,300"],
    "NEGV": ["2020-01-02,1,2,0.5,1.5,1.5,-7", "2020-01-03,1,2,0.5,1.5,1.5,7"],
    "INFP": ["2020-01-02,inf,2,0.5,1.5,1.5,7", "2020-01-03,1,2,0.5,1.5,nan,7",
             "2020-01-06,1,2,0.5,1.5,1.5,7"],
    "TRAIL": ["2020-01-02,1,2,0.5,1.5,1.5,7,", "2020-01-03,1,2,0.5,1.5,1.5,8,"],
    "TRAILB": ["2020-01-02,1,2,0.5,1.5,1.5,7,", "2020-01-03,,,,,,",
               "2020-01-06,1,2,0.5,1.5,1.5,9,"],
    # Rows the typed scan skips without a word: only the count of lines gives them away.
    "FIELDS": ["2020-01-02,1,2,0.5,1.5,1.5,7,9", "2020-01-03,1,2,0.5,1.5,7",
               "2020-01-06,1,2,0.5,1.5,1.5,7"],
    "WORD": ["2020-01-02,abc,2,0.5,1.5,1.5,7", "2020-01-03,1,2,0.5,1.5,1.5,8"],
    "BADDATE": ["2020-02-30,1,2,0.5,1.5,1.5,7", "2020-03-02,1,2,0.5,1.5,1.5,8"],
    "EMPTYLINE": ["2020-01-02,1,2,0.5,1.5,1.5,7", "", "2020-01-03,1,2,0.5,1.5,1.5,8"],
}  # fmt: skip
# Line endings: no newline after the last row; Windows line ends.
LINE_ENDINGS = {
    "NOEOL": "Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,1,2,0.5,1.5,1.5,7\n"
    "2020-01-03,1,2,0.5,1.5,1.5,8",
    "CRLF": "Date,Open,High,Low,Close,Adj Close,Volume\r\n2020-01-02,1,2,0.5,1.5,1.5,7\r\n"
    "2020-01-03,,,,,,\r\n2020-01-06,1,2,0.5,1.5,1.5,9\r\n",
}


def test_irregular_files_match_the_oracle(excerpt_dir: Path, pipeline_factory, tmp_path) -> None:
    archive = tmp_path / "irregular"
    shutil.copytree(excerpt_dir, archive)
    for stem, lines in IRREGULAR_FILES.items():
        text = "\n".join(["Date,Open,High,Low,Close,Adj Close,Volume", *lines]) + "\n"
        (archive / "stocks" / f"{stem}.csv").write_text(text)
    for stem, text in LINE_ENDINGS.items():
        (archive / "stocks" / f"{stem}.csv").write_bytes(text.encode())
    pipeline = pipeline_factory(archive)
    assert pipeline.ingest().success
    expected = read_expected(archive)
    assert loaded_rows(pipeline) == expected.rows
    rejected = pipeline.query("SELECT file, line_number FROM rejected_rows WHERE line_number > 0")
    assert set(rejected) == expected.rejected_lines
    # By hand, the cases the oracle and the loader could both get wrong:
    assert ("stocks/FRAC.csv", 3) in expected.rejected_lines  # 100.5 is not rounded to 101
    assert ("stocks/DUPE.csv", 4) in expected.rejected_lines  # the later 2020-01-03
    assert pipeline.query("SELECT count(*) FROM price_volume_table WHERE symbol = 'DESC'") == [(3,)]
    assert pipeline.query(
        "SELECT volume FROM price_volume_table WHERE symbol LIKE 'TRAIL%' ORDER BY symbol, date"
    ) == [(7,), (8,), (7,), (9,)]
    assert {("stocks/FIELDS.csv", 2), ("stocks/FIELDS.csv", 3)} <= expected.rejected_lines
    assert pipeline.query(
        "SELECT symbol, count(*) FROM price_volume_table "
        "WHERE symbol IN ('NOEOL', 'CRLF', 'EMPTYLINE') GROUP BY ALL ORDER BY ALL"
    ) == [("CRLF", 2), ("EMPTYLINE", 2), ("NOEOL", 2)]


def test_parquet_stage_has_exact_schema_and_rows(sample_dir: Path, pipeline_factory) -> None:
    pipeline = pipeline_factory(sample_dir)
    assert pipeline.ingest().success
    stage = pipeline.settings.prices_stage
    for path in stage.rglob("*.parquet"):
        schema = pq.read_schema(path)
        assert [(field.name, field.type) for field in schema] == STAGE_ARROW_TYPES, path
    with duckdb.connect() as con:
        relation = con.sql(f"SELECT * FROM read_parquet('{stage}/**/*.parquet')")
        assert list(zip(relation.columns, map(str, relation.types), strict=True)) == STAGE_TYPES
        staged = con.sql(
            f"""SELECT "Symbol", "Security Name", "Date"::DATE, "Open", "High", "Low", "Close",
                       "Adj Close", "Volume"
                FROM read_parquet('{stage}/**/*.parquet') ORDER BY ALL"""
        ).fetchall()
        bad_dates = con.execute(
            f"""SELECT count(*) FROM read_parquet('{stage}/**/*.parquet')
                WHERE NOT regexp_full_match("Date", '\\d{{4}}-\\d{{2}}-\\d{{2}}')"""
        ).fetchone()[0]
    assert bad_dates == 0
    assert staged == pipeline.query("SELECT * FROM price_volume_table ORDER BY ALL")
    # Symbols without a meta row keep a NULL security name in the stage too.
    assert any(row[1] is None for row in staged)


def test_rematerializing_is_idempotent(sample_dir: Path, pipeline_factory) -> None:
    pipeline = pipeline_factory(sample_dir)
    assert pipeline.ingest().success
    first = sorted(pipeline.query("SELECT * FROM price_volume_table"))
    assert pipeline.ingest().success
    assert sorted(pipeline.query("SELECT * FROM price_volume_table")) == first
    assert pipeline.query(
        "SELECT count(*) FROM (SELECT symbol, date FROM price_volume_table "
        "GROUP BY ALL HAVING count(*) > 1)"
    ) == [(0,)]


class StageUnwritable(Warehouse):
    """The warehouse on connections that DuckDB lets read `readable` and write only the
    warehouse file: writing a Parquet stage fails, as on a full disk (file permissions would not
    stop the tests, which run as root)."""

    readable: list[str]

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with super().get_connection() as con:
            con.execute("SET allowed_directories = $d", {"d": self.readable})
            con.execute("SET allowed_paths = $p", {"p": [self.database, f"{self.database}.wal"]})
            con.execute("SET enable_external_access = false")
            yield con


def test_failed_load_leaves_previous_table_and_stage(
    sample_dir: Path, pipeline_factory, tmp_path: Path
) -> None:
    pipeline = pipeline_factory(sample_dir)
    assert pipeline.ingest().success
    before = sorted(pipeline.query("SELECT * FROM price_volume_table"))
    stage = pipeline.settings.prices_stage
    stage_files = {p: p.read_bytes() for p in stage.rglob("*.parquet")}

    bigger = tmp_path / "bigger"
    generate_folder(SampleSpec(stocks=20, etfs=5, rows=300, seed=7), bigger)
    pipeline.use_source(bigger)
    pipeline.warehouse = StageUnwritable(
        database=pipeline.warehouse.database,
        connection_config=pipeline.warehouse.connection_config,
        readable=[f"{bigger}/", f"{pipeline.warehouse.database}.tmp/"],
    )
    result = pipeline.materialize(["raw_zip", "price_volume_table"], raise_on_error=False)
    assert not result.success
    message = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert ".prices.pending-" in message and "disabled by configuration" in message, message
    assert sorted(pipeline.query("SELECT * FROM price_volume_table")) == before
    assert {p: p.read_bytes() for p in stage.rglob("*.parquet")} == stage_files
    assert [p.name for p in stage.parent.iterdir()] == [stage.name]  # no pending folder left


def test_reads_a_zip_with_a_top_level_folder(excerpt_dir: Path, pipeline_factory, tmp_path) -> None:
    nested = tmp_path / "nested"
    shutil.copytree(excerpt_dir, nested / "stock-market-dataset")
    archive = zip_folder_plain(nested, tmp_path / "nested.zip")
    pipeline = pipeline_factory(archive)
    assert pipeline.materialize(["raw_zip", "price_volume_table"]).success
    assert pipeline.query("SELECT count(DISTINCT symbol) FROM price_volume_table") == [(5,)]
