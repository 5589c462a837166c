"""features_table: hand-computed windows, pandas as a second method on real data, the SQL
definition against the fast kernel, and per-partition replacement."""

from __future__ import annotations

import base64
import io
import random
import re
from pathlib import Path

import duckdb
import matplotlib.image as plt_image
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etf_assets.constants import META_HEADER, PRICE_HEADER
from etf_assets.features import batch
from etf_assets.features import compute as features
from etf_assets.orchestration import schemas
from etf_assets_tests.conftest import STAGE_ARROW_TYPES, features_config

FEATURE_QUERY = """SELECT symbol, date, volume, adj_close, vol_moving_avg, adj_close_rolling_med
                   FROM features_table ORDER BY symbol, date"""


def run_facts(result) -> dict:
    """What the features run records once for the whole table: its one observation's metadata."""
    [event] = result.get_asset_observation_events()
    return event.asset_observation_data.asset_observation.metadata


def write_tiny_archive(root: Path) -> None:
    """T: 31 rows (shuffled in the file); S: 29 rows, never a full window."""
    (root / "stocks").mkdir(parents=True)
    (root / "etfs").mkdir()
    meta = [META_HEADER]
    days = pd.bdate_range("2020-01-01", periods=31)
    for symbol, n in (("T", 31), ("S", 29)):
        meta.append(f"Y,{symbol},{symbol} Corp Common Stock,Q,Q,N,100.0,N,N,,{symbol},N")
        lines = [
            f"{days[i - 1]:%Y-%m-%d},1.0,2.0,0.5,1.5,{float(i * i)},{i}" for i in range(1, n + 1)
        ]
        random.Random(n).shuffle(lines)
        (root / "stocks" / f"{symbol}.csv").write_text("\n".join([PRICE_HEADER, *lines]) + "\n")
    (root / "symbols_valid_meta.csv").write_text("\n".join(meta) + "\n")


@pytest.fixture(params=["sql", "kernel"])
def method(request: pytest.FixtureRequest) -> str:
    """Run the asset with the window SQL or with the kernel, whatever the batch size."""
    return request.param


def pandas_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The second method: pandas groupby().rolling(30) over the same rows."""
    frame = frame.sort_values(["symbol", "date"]).reset_index(drop=True)
    grouped = frame.groupby("symbol", sort=False)
    frame["expected_avg"] = grouped["volume"].rolling(30).mean().reset_index(level=0, drop=True)
    frame["expected_med"] = (
        grouped["adj_close"].rolling(30).median().reset_index(level=0, drop=True)
    )
    return frame


def assert_matches_pandas(pipeline) -> int:
    with pipeline.connect() as con:
        frame = con.execute(FEATURE_QUERY).df()
    checked = pandas_features(frame)
    np.testing.assert_array_equal(checked["vol_moving_avg"].isna(), checked["expected_avg"].isna())
    np.testing.assert_array_equal(
        checked["adj_close_rolling_med"].isna(), checked["expected_med"].isna()
    )
    np.testing.assert_allclose(checked["vol_moving_avg"], checked["expected_avg"], rtol=1e-12)
    np.testing.assert_allclose(
        checked["adj_close_rolling_med"], checked["expected_med"], rtol=1e-12
    )
    return len(checked)


def test_hand_computed_windows(tmp_path: Path, pipeline_factory, method: str) -> None:
    write_tiny_archive(tmp_path / "tiny")
    pipeline = pipeline_factory(tmp_path / "tiny")
    assert pipeline.ingest().success
    result = pipeline.features(run_config=features_config(method=method))
    assert result.success
    rows = pipeline.query(FEATURE_QUERY)
    t_rows = [r for r in rows if r[0] == "T"]
    s_rows = [r for r in rows if r[0] == "S"]
    assert len(t_rows) == 31 and len(s_rows) == 29
    assert all(r[4] is None and r[5] is None for r in t_rows[:29] + s_rows)
    # Row 30: volumes 1..30, adj closes 1,4,...,900 -> mean 15.5, median (15**2 + 16**2) / 2.
    assert t_rows[29][4:] == (15.5, 240.5)
    # Row 31: volumes 2..31 -> 16.5; squares of 2..31 -> median (16**2 + 17**2) / 2.
    assert t_rows[30][4:] == (16.5, 272.5)
    assert run_facts(result)["method"].value == method


def test_real_excerpt_matches_pandas_rolling(excerpt_dir: Path, pipeline_factory, method) -> None:
    pipeline = pipeline_factory(excerpt_dir)
    assert pipeline.ingest().success
    # Small batches: stage 2 is several files, written one after the other by one writer.
    result = pipeline.features(run_config=features_config(method=method, batch_rows=4_000))
    assert result.success
    # One run, one step execution, one materialization per symbol partition.
    keys = pipeline.instance.get_dynamic_partitions("symbols")
    starts = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
    assert starts.count("features_table") == 1
    assert sorted(e.partition for e in result.get_asset_materialization_events()) == sorted(keys)
    assert assert_matches_pandas(pipeline) == 25_818 - 1  # every price row but the blank one
    symbols = {r[0] for r in pipeline.query("SELECT DISTINCT symbol FROM features_table")}
    assert symbols == set(pipeline.instance.get_dynamic_partitions("symbols"))
    # Stage 2 holds the same rows with the problem statement's names and types.
    stage = pipeline.settings.features_stage
    assert len(list(stage.rglob("*.parquet"))) >= 4
    for path in stage.rglob("*.parquet"):
        schema = pq.read_schema(path)
        assert [(field.name, field.type) for field in schema] == [
            *STAGE_ARROW_TYPES,
            ("vol_moving_avg", pa.float64()),
            ("adj_close_rolling_med", pa.float64()),
        ], path
    with duckdb.connect() as con:
        staged = con.execute(
            f"""SELECT * REPLACE ("Date"::DATE AS "Date")
                FROM read_parquet('{stage}/**/*.parquet') ORDER BY ALL"""
        ).fetchall()
    assert staged == pipeline.query("SELECT * FROM features_table ORDER BY ALL")


def test_each_partition_carries_its_own_symbol_facts(excerpt_dir: Path, pipeline_factory) -> None:
    pipeline = pipeline_factory(excerpt_dir)
    assert pipeline.ingest().success
    result = pipeline.features()
    assert result.success
    with duckdb.connect(pipeline.warehouse.database, read_only=True) as con:
        prices = con.execute("SELECT symbol, date, volume, adj_close FROM price_volume_table").df()
    expected = pandas_features(prices).sort_values(["symbol", "date"])
    events = {
        e.partition: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    assert set(events) == set(expected["symbol"])
    for symbol, rows in expected.groupby("symbol"):
        meta, last = events[symbol], rows.iloc[-1]
        assert meta["dagster/row_count"].value == len(rows)
        assert meta["first_date"].value == rows["date"].min().date().isoformat()
        assert meta["last_date"].value == rows["date"].max().date().isoformat()
        assert meta["rows_with_features"].value == rows["expected_avg"].notna().sum()
        assert meta["last_vol_moving_avg"].value == pytest.approx(last["expected_avg"])
        assert meta["last_adj_close_rolling_med"].value == pytest.approx(last["expected_med"])
        # Run-wide facts are not repeated in every partition.
        assert "preview" not in meta and "symbols_requested" not in meta
    facts = run_facts(result)
    assert facts["table_rows"].value == len(expected)
    assert facts["symbols_requested"].value == len(events)


def test_column_schemas_describe_the_real_tables(excerpt_dir: Path, pipeline_factory) -> None:
    pipeline = pipeline_factory(excerpt_dir)
    assert pipeline.ingest().success and pipeline.features().success
    for table, schema in [
        ("price_volume_table", schemas.PRICE_VOLUME_SCHEMA),
        ("symbol_table", schemas.SYMBOL_SCHEMA),
        ("features_table", schemas.FEATURES_SCHEMA),
    ]:
        described = pipeline.query(f"SELECT column_name, column_type FROM (DESCRIBE {table})")
        assert [(c.name, c.type) for c in schema.columns] == described, table
        assert all(c.description for c in schema.columns), table


@pytest.mark.parametrize("dataset", ["excerpt", "sample"])
def test_sql_definition_and_kernel_are_identical(
    dataset: str, excerpt_dir: Path, sample_dir: Path, pipeline_factory
) -> None:
    pipeline = pipeline_factory(excerpt_dir if dataset == "excerpt" else sample_dir)
    assert pipeline.ingest().success
    symbols = pipeline.instance.get_dynamic_partitions("symbols")
    results = {}
    with duckdb.connect(pipeline.warehouse.database) as con:
        names = dict(
            con.execute(
                "SELECT symbol, any_value(security_name) FROM price_volume_table "
                "WHERE symbol IN (SELECT unnest($s)) GROUP BY symbol ORDER BY symbol",
                {"s": symbols},
            ).fetchall()
        )
        for method in ("sql", "kernel"):
            computed = batch.compute_features(con, names, method)
            results[method] = (
                computed.rows.select(
                    ["symbol_number", "date", "vol_moving_avg", "adj_close_rolling_med"]
                )
                .sort_by([("symbol_number", "ascending"), ("date", "ascending")])
                .to_pandas()
            )
            assert sorted(computed.symbols["symbol"].to_pylist()) == sorted(symbols)
    pd.testing.assert_frame_equal(results["sql"], results["kernel"], check_exact=True)
    assert results["sql"]["vol_moving_avg"].notna().sum() > 0


def test_one_partition_rematerialized_leaves_others_identical(
    sample_dir: Path, pipeline_factory
) -> None:
    pipeline = pipeline_factory(sample_dir)
    assert pipeline.ingest().success
    # Small batches: a stage of several files.
    assert pipeline.features(run_config=features_config(batch_rows=5_000)).success
    stage_files = sorted(pipeline.settings.features_stage.glob("*.parquet"))
    assert len(stage_files) >= 5
    keys = pipeline.instance.get_dynamic_partitions("symbols")
    target = keys[len(keys) // 2]
    others_sql = "SELECT * FROM features_table WHERE symbol <> $s ORDER BY symbol, date"
    others_before = pipeline.query(others_sql, {"s": target})
    stage_glob = f"{pipeline.settings.features_stage}/**/*.parquet"
    stage_sql = f"""SELECT * FROM read_parquet('{stage_glob}') WHERE "Symbol" <> $s
                    ORDER BY "Symbol", "Date" """
    with duckdb.connect() as con:
        stage_before = con.execute(stage_sql, {"s": target}).fetchall()

    with duckdb.connect(pipeline.warehouse.database) as con:  # new prices for one symbol
        con.execute(
            "UPDATE price_volume_table SET volume = volume * 2 WHERE symbol = $s", {"s": target}
        )
    result = pipeline.materialize(["features_table"], partition_key=target)
    assert result.success

    assert pipeline.query(others_sql, {"s": target}) == others_before
    # The target's new rows are one new file; only the file that held its old rows changed.
    after = sorted(pipeline.settings.features_stage.glob("*.parquet"))
    assert len(after) == len(stage_files) + 1
    assert len(set(after) - set(stage_files)) == 1
    with duckdb.connect() as con:
        assert con.execute(stage_sql, {"s": target}).fetchall() == stage_before
        staged_rows = con.execute(f"SELECT count(*) FROM read_parquet('{stage_glob}')").fetchone()[
            0
        ]
    assert staged_rows == pipeline.query("SELECT count(*) FROM features_table")[0][0]
    assert_matches_pandas(pipeline)  # the target's features follow its doubled volumes
    doubled = pipeline.query(
        "SELECT count(*) FROM features_table f JOIN price_volume_table p USING (symbol, date) "
        "WHERE symbol = $s AND f.volume = p.volume",
        {"s": target},
    )
    assert (
        doubled[0][0]
        == pipeline.query(
            "SELECT count(*) FROM price_volume_table WHERE symbol = $s", {"s": target}
        )[0][0]
    )


def test_unchanged_symbols_are_not_recomputed(sample_dir: Path, pipeline_factory) -> None:
    pipeline = pipeline_factory(sample_dir)
    assert pipeline.ingest().success

    def computed(result) -> tuple[int, int]:
        meta = run_facts(result)
        return meta["symbols_requested"].value, meta["symbols_computed"].value

    keys = pipeline.instance.get_dynamic_partitions("symbols")
    assert computed(pipeline.features()) == (len(keys), len(keys))
    before = pipeline.query("SELECT * FROM features_table ORDER BY symbol, date")
    assert computed(pipeline.features()) == (len(keys), 0)
    assert pipeline.query("SELECT * FROM features_table ORDER BY symbol, date") == before

    assert pipeline.ingest().success  # same archive again: same content, nothing to recompute
    assert computed(pipeline.features()) == (len(keys), 0)
    with duckdb.connect(pipeline.warehouse.database) as con:
        con.execute(
            "UPDATE price_volume_table SET adj_close = adj_close + 1 WHERE symbol = $s",
            {"s": keys[0]},
        )
    assert computed(pipeline.features()) == (len(keys), 1)
    assert_matches_pandas(pipeline)


def test_materialization_shows_volume_against_its_average(tmp_path: Path, pipeline_factory) -> None:
    write_tiny_archive(tmp_path / "tiny")
    pipeline = pipeline_factory(tmp_path / "tiny")
    assert pipeline.ingest().success
    chart = run_facts(pipeline.features())["volume_vs_moving_average"].value
    # T, the longer of the two symbols, with all its 31 rows, drawn as a PNG the UI renders.
    assert chart.startswith("**T**, last 31 trading days")
    encoded = re.search(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", chart).group(1)
    picture = plt_image.imread(io.BytesIO(base64.b64decode(encoded)), format="png")
    height, width = picture.shape[:2]
    assert width > 600 and height > 200
    assert len(np.unique(picture.reshape(-1, picture.shape[-1]), axis=0)) > 10  # not blank


def test_a_symbol_with_two_security_names_fails_and_changes_nothing(
    sample_dir: Path, pipeline_factory
) -> None:
    pipeline = pipeline_factory(sample_dir)
    assert pipeline.ingest().success
    assert pipeline.features().success
    before = pipeline.query("SELECT * FROM features_table ORDER BY ALL")
    state_before = pipeline.query("SELECT * FROM features_state ORDER BY ALL")
    stage = pipeline.settings.features_stage
    stage_before = {path.name: path.read_bytes() for path in stage.iterdir()}
    target = pipeline.instance.get_dynamic_partitions("symbols")[0]
    with duckdb.connect(pipeline.warehouse.database) as con:  # one row renamed, and its volume
        con.execute(
            """UPDATE price_volume_table SET security_name = 'Another name', volume = volume + 1
               WHERE symbol = $s AND date = (SELECT max(date) FROM price_volume_table
                                             WHERE symbol = $s)""",
            {"s": target},
        )
    result = pipeline.materialize(["features_table"], partition_key=target, raise_on_error=False)
    assert not result.success
    message = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "several security names" in message and target in message
    assert pipeline.query("SELECT * FROM features_table ORDER BY ALL") == before
    assert pipeline.query("SELECT * FROM features_state ORDER BY ALL") == state_before
    assert {path.name: path.read_bytes() for path in stage.iterdir()} == stage_before


def test_a_failed_insert_reports_its_own_error(sample_dir: Path, pipeline_factory) -> None:
    pipeline = pipeline_factory(sample_dir)
    assert pipeline.ingest().success
    # A features_table made by hand with one more column, which no insert fills: the pipeline
    # keeps a table it finds, so its first insert fails inside the transaction.
    with duckdb.connect(pipeline.warehouse.database) as con:
        con.execute(
            """CREATE TABLE features_table AS
               SELECT *, NULL::DOUBLE AS vol_moving_avg, NULL::DOUBLE AS adj_close_rolling_med
               FROM price_volume_table LIMIT 0"""
        )
        con.execute("ALTER TABLE features_table ADD COLUMN added_by_hand INTEGER")
        con.execute("ALTER TABLE features_table ALTER COLUMN added_by_hand SET NOT NULL")
    key = pipeline.instance.get_dynamic_partitions("symbols")[0]
    result = pipeline.materialize(["features_table"], partition_key=key, raise_on_error=False)
    assert not result.success
    message = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "NOT NULL constraint failed: features_table.added_by_hand" in message, message
    assert "aborted" not in message
    # Rolled back: nothing was recorded as computed, and stage 2 holds no file.
    assert pipeline.query("SELECT count(*) FROM features_table") == [(0,)]
    assert pipeline.query("SELECT count(*) FROM features_state") == [(0,)]
    assert not list(pipeline.settings.features_stage.glob("*.parquet*"))


def test_auto_switches_to_the_kernel_at_kernel_min_rows(sample_dir: Path, pipeline_factory) -> None:
    pipeline = pipeline_factory(sample_dir)
    assert pipeline.ingest().success
    keys = pipeline.instance.get_dynamic_partitions("symbols")
    rows = pipeline.query("SELECT count(*) FROM price_volume_table")[0][0]
    stage = pipeline.settings.features_stage
    with duckdb.connect(pipeline.warehouse.database) as con:
        below = features.write_features(con, keys, stage, kernel_min_rows=rows + 1)
        con.execute("DELETE FROM features_state")  # so that every symbol is computed again
        at = features.write_features(con, keys, stage, kernel_min_rows=rows)
        con.execute("DELETE FROM features_state")
        default = features.write_features(con, keys, stage)
    assert (below.rows, below.method) == (rows, "sql")
    assert (at.rows, at.method) == (rows, "kernel")
    assert rows < features.KERNEL_MIN_ROWS and default.method == "sql"
