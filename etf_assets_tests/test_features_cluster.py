"""features_table and Parquet stage 2 computed as tasks on a real Dask cluster equal the local
in-process run's, value for value: the local path is the reference."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from etf_assets.cluster.tasks import connected
from etf_assets.features import buckets
from etf_assets.features.batch import compute_features
from etf_assets.features.compute import FeaturesReport, write_features
from etf_assets.ingest.load_prices import load_prices

# Small batches: several buckets per run, so that both workers get some.
BATCH_ROWS = 4_000


def load_folder(source: Path, folder: Path) -> Path:
    """`folder` with a warehouse whose price_volume_table (and stage 1) holds `source`."""
    folder.mkdir(parents=True)
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        load_prices(con, source, folder / "prices")
    return folder


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, excerpt_dir: Path, sample_dir: Path):
    """Each archive loaded once; tests run features on copies (`copy_folder`)."""
    root = tmp_path_factory.mktemp("loaded")
    return {
        "excerpt": load_folder(excerpt_dir, root / "excerpt"),
        "sample": load_folder(sample_dir, root / "sample"),
    }


def copy_folder(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def run_features(folder: Path, method: str, cluster=None) -> FeaturesReport:
    """Bring the features of every symbol in `folder`'s warehouse up to date."""
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        symbols = [
            row[0]
            for row in con.execute(
                "SELECT DISTINCT symbol FROM price_volume_table ORDER BY symbol"
            ).fetchall()
        ]
        return write_features(
            con,
            symbols,
            folder / "features",
            method,
            batch_rows=BATCH_ROWS,
            cluster=cluster,
            prices_stage=None if cluster is None else folder / "prices",
        )


def contents(folder: Path) -> dict[str, object]:
    """Everything the features step writes, each row set sorted (storage order may differ);
    Python's == compares the doubles exactly and NULLs as None."""
    stage = sorted((folder / "features").glob("*.parquet"))
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as con:
        return {
            "table": con.execute("SELECT * FROM features_table ORDER BY ALL").fetchall(),
            "table_types": con.execute("DESCRIBE features_table").fetchall(),
            "state": con.execute(
                "SELECT symbol, content_hash, features_version FROM features_state ORDER BY ALL"
            ).fetchall(),
            "stage": con.execute(
                "SELECT * FROM read_parquet($files) ORDER BY ALL", {"files": list(map(str, stage))}
            ).fetchall(),
            "stage_schema": {pq.read_schema(path).remove_metadata() for path in stage},
            "stage_files": len(stage),
            "leftovers": sorted(p.name for p in (folder / "features").glob("*.pending")),
        }


def assert_same_contents(cluster_folder: Path, local_folder: Path) -> None:
    on_cluster, local = contents(cluster_folder), contents(local_folder)
    for key in local:
        assert on_cluster[key] == local[key], key
    assert len(local["table"]) == len(local["stage"]) > 0
    assert any(row[-1] is None for row in local["table"])  # the first 29 rows of each symbol
    assert any(row[-1] is not None for row in local["table"])


@pytest.mark.parametrize("method", ["sql", "kernel"])
@pytest.mark.parametrize("archive", ["excerpt", "sample"])
def test_cluster_run_equals_local_run(
    dask_cluster, loaded, tmp_path: Path, archive: str, method: str
) -> None:
    local = copy_folder(loaded[archive], tmp_path / "local")
    on_cluster = copy_folder(loaded[archive], tmp_path / "cluster")
    expected = run_features(local, method)

    with connected(dask_cluster.address) as cluster:
        report = run_features(on_cluster, method, cluster)

    assert_same_contents(on_cluster, local)
    assert (report.method, report.rows, report.rows_with_features, report.symbols_computed) == (
        expected.method,
        expected.rows,
        expected.rows_with_features,
        expected.symbols_computed,
    )
    buckets_run = contents(on_cluster)["stage_files"]
    assert buckets_run > 2
    assert cluster.work.tasks == {"features": buckets_run}
    assert len(cluster.work.workers) == 2, cluster.work.workers


def change_prices(source: Path, to: Path) -> list[str]:
    """A copy of the archive `source` with one symbol's last Adj Close changed, one symbol's
    last row gone and one symbol's file gone; return those three symbols."""
    shutil.copytree(source, to)
    files = sorted((to / "stocks").glob("*.csv"), key=lambda path: path.stat().st_size)[-3:]
    changed, shortened, dropped = files
    *lines, last = changed.read_text().splitlines()
    fields = last.split(",")
    fields[5] = str(float(fields[5]) + 0.25)
    changed.write_text("\n".join([*lines, ",".join(fields)]) + "\n")
    shortened.write_text("\n".join(shortened.read_text().splitlines()[:-1]) + "\n")
    dropped.unlink()
    return [path.stem for path in files]


def test_incremental_cluster_run_equals_local(
    dask_cluster, loaded, sample_dir: Path, tmp_path: Path
) -> None:
    """A run after some symbols' prices changed recomputes just those, on the cluster as
    locally; it starts from the features a local run wrote."""
    first = copy_folder(loaded["sample"], tmp_path / "first")
    run_features(first, "kernel")
    changed = change_prices(sample_dir, tmp_path / "changed-archive")
    with duckdb.connect(str(first / "warehouse.duckdb")) as con:
        load_prices(con, tmp_path / "changed-archive", first / "prices")
    local = copy_folder(first, tmp_path / "local")
    on_cluster = copy_folder(first, tmp_path / "cluster")

    expected = run_features(local, "kernel")
    with connected(dask_cluster.address) as cluster:
        report = run_features(on_cluster, "kernel", cluster)
        tasks = dict(cluster.work.tasks)
        unchanged = contents(on_cluster)
        again = run_features(on_cluster, "kernel", cluster)

    assert_same_contents(on_cluster, local)
    assert report.symbols_computed == expected.symbols_computed == 2  # the dropped one: removed
    assert tasks == {"features": 2}  # one bucket per changed symbol (BATCH_ROWS)
    assert changed[2] not in {row[0] for row in unchanged["table"]}
    assert changed[2] in {row[0] for row in contents(first)["table"]}
    # Nothing changed since: no task, no change.
    assert (again.symbols_computed, again.rows) == (0, 0)
    assert dict(cluster.work.tasks) == tasks
    assert contents(on_cluster) == unchanged


def test_rerun_bucket_task_overwrites_its_file(dask_cluster, loaded, tmp_path: Path) -> None:
    """A task run twice (as after its worker died) leaves one file, the rows written once."""
    folder = loaded["excerpt"]
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as con:
        symbols = dict(
            con.execute(
                """SELECT symbol, any_value(security_name) FROM price_volume_table
                   WHERE symbol IN ('AACG', 'AAAU') GROUP BY symbol ORDER BY symbol"""
            ).fetchall()
        )
        expected_rows = compute_features(con, symbols, "kernel").rows.num_rows
    stage = tmp_path / "features"
    stage.mkdir()
    path = stage / "part-bucket.parquet.pending"
    task = (str(folder / "prices" / "*.parquet"), symbols, expected_rows, "kernel", str(path))

    with connected(dask_cluster.address) as cluster:
        [first] = cluster.run("features", buckets.compute_bucket, [task])
        first_rows = pq.read_table(path)
        [second] = cluster.run("features", buckets.compute_bucket, [task])

    assert sorted(p.name for p in stage.iterdir()) == [path.name]
    assert first == second
    assert pq.read_metadata(path).num_rows == expected_rows
    assert pq.read_table(path).sort_by("Date").equals(first_rows.sort_by("Date"))


def test_stage_of_other_prices_is_refused(dask_cluster, loaded, tmp_path: Path) -> None:
    """Stage 1 must hold the table's rows: a stage of another load is refused before inserting,
    and the table and stage 2 stay as they were."""
    folder = copy_folder(loaded["excerpt"], tmp_path / "excerpt")
    run_features(folder, "kernel")
    before = contents(folder)
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        con.execute("UPDATE features_state SET content_hash = 0")  # every symbol is stale
    other_prices = loaded["sample"] / "prices"

    with (
        connected(dask_cluster.address) as cluster,
        duckdb.connect(str(folder / "warehouse.duckdb")) as con,
        pytest.raises(buckets.PricesStageMismatchError, match="holds 0 rows"),
    ):
        write_features(
            con, ["AAAU", "AACG"], folder / "features", "kernel", cluster=cluster,
            prices_stage=other_prices,
        )  # fmt: skip

    after = contents(folder)
    assert {key: after[key] for key in ("table", "stage", "leftovers")} == {
        key: before[key] for key in ("table", "stage", "leftovers")
    }
