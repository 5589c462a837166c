"""Training on the Dask cluster: the workers sum over shards of Parquet stage 2, and the result
equals `fit_and_evaluate` on the warehouse's rows (the local path is the reference)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from etf_assets.cluster.tasks import connected
from etf_assets.features.compute import write_features
from etf_assets.ingest.load_prices import load_prices
from etf_assets.ingest.sample_archive import SampleSpec, generate_folder
from etf_assets.model.evaluation import Evaluation, TrainingResult
from etf_assets.model.fit import fit_and_evaluate
from etf_assets.model.frame import LAG_FROM_STORAGE_ORDER, LAG_FROM_WINDOW, load_training_frame
from etf_assets.model.sharded_fit import fit_and_evaluate_on_cluster, shards_of

# A shard of at most this many rows holds two or three of the stage's files.
SHARD_ROWS = 2_000
TIGHT = 1e-9


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse and its stages built by the local pipeline steps from a sample archive (with
    its quirks, e.g. a symbol too short for features), stage 2 written in small batches: several
    files, each holding all rows of its symbols."""
    folder = tmp_path_factory.mktemp("sharded_fit")
    generate_folder(SampleSpec(stocks=12, etfs=4, rows=400, seed=11), folder / "archive")
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        load_prices(con, folder / "archive", folder / "prices")
        symbols = [
            row[0] for row in con.sql("SELECT DISTINCT symbol FROM price_volume_table").fetchall()
        ]
        write_features(con, symbols, folder / "features", batch_rows=1_200)
    return folder


def _counts(e: Evaluation) -> tuple[str, str, str, int, int]:
    return e.features, e.split, e.model, e.train_rows, e.test_rows


def _stage_2(warehouse: Path) -> list[str]:
    return sorted(str(path) for path in (warehouse / "features").glob("*.parquet"))


@pytest.fixture(scope="module")
def local(warehouse: Path) -> TrainingResult:
    with duckdb.connect(str(warehouse / "warehouse.duckdb"), read_only=True) as con:
        return fit_and_evaluate(load_training_frame(con))


def test_shards_group_whole_files_in_name_order(warehouse: Path) -> None:
    files = _stage_2(warehouse)
    rows = {name: pq.ParquetFile(name).metadata.num_rows for name in files}
    assert len(files) >= 5 and all(rows.values())

    shards = shards_of(list(reversed(files)), SHARD_ROWS)
    assert [name for shard in shards for name in shard] == files
    assert 1 < len(shards) < len(files)
    for shard in shards:
        assert len(shard) == 1 or sum(rows[name] for name in shard) <= SHARD_ROWS
    for shard, after in zip(shards, shards[1:], strict=False):
        assert sum(rows[name] for name in [*shard, after[0]]) > SHARD_ROWS
    assert shards_of(files, 1) == [[name] for name in files]  # a larger file is a shard alone
    assert shards_of([], SHARD_ROWS) == []


def test_cluster_fit_equals_the_local_fit(
    dask_cluster, warehouse: Path, local: TrainingResult
) -> None:
    files = _stage_2(warehouse)
    with connected(dask_cluster.address) as cluster:
        result = fit_and_evaluate_on_cluster(cluster, files, shard_rows=SHARD_ROWS)
        again = fit_and_evaluate_on_cluster(cluster, files, shard_rows=SHARD_ROWS)
        shards = len(shards_of(files, SHARD_ROWS, cluster.min_tasks))
    assert dict(cluster.work.tasks) == {
        kind: 2 * shards for kind in ("train_summaries", "train_grams", "train_scores")
    }
    assert len(cluster.work.workers) == 2  # both workers ran tasks

    # Row counts, dates and the cutoff exactly; the loader's way of lagging may differ by shard.
    assert {k: v for k, v in result.params.items() if k != "lag_source"} == {
        k: v for k, v in local.params.items() if k != "lag_source"
    }
    assert set(result.params["lag_source"].split(", ")) <= {
        LAG_FROM_STORAGE_ORDER,
        LAG_FROM_WINDOW,
    }
    assert [_counts(e) for e in result.evaluations] == [_counts(e) for e in local.evaluations]
    assert result.metrics.keys() == local.metrics.keys()
    for name, value in local.metrics.items():
        assert result.metrics[name] == pytest.approx(value, rel=TIGHT), name

    ours, reference = result.pipeline, local.pipeline
    for attribute in ("mean_", "var_", "scale_", "n_samples_seen_"):
        np.testing.assert_allclose(
            getattr(ours[0], attribute), getattr(reference[0], attribute), rtol=TIGHT
        )
    np.testing.assert_allclose(ours[-1].coef_, reference[-1].coef_, rtol=TIGHT)
    assert ours[-1].intercept_ == pytest.approx(reference[-1].intercept_, rel=TIGHT)
    assert ours[-1].rank_ == reference[-1].rank_
    np.testing.assert_allclose(ours[-1].singular_, reference[-1].singular_, rtol=TIGHT)

    # The holdout is smaller than the plot sample: both plot all its rows, in another order.
    assert len(result.plot_actual) == result.params["rows_time_holdout"]
    ours_plotted = np.lexsort((result.plot_predicted, result.plot_actual))
    local_plotted = np.lexsort((local.plot_predicted, local.plot_actual))
    np.testing.assert_array_equal(
        result.plot_actual[ours_plotted], local.plot_actual[local_plotted]
    )
    np.testing.assert_allclose(
        result.plot_predicted[ours_plotted], local.plot_predicted[local_plotted], rtol=TIGHT
    )
    # The input example: holdout rows (the local frame's), the same on every run.
    assert list(result.input_example.columns) == list(local.input_example.columns)
    assert len(result.input_example) == len(local.input_example)
    with duckdb.connect(str(warehouse / "warehouse.duckdb"), read_only=True) as con:
        holdout = set(
            con.execute(
                "SELECT vol_moving_avg, adj_close_rolling_med FROM features_table "
                "WHERE date > $cutoff::DATE AND volume IS NOT NULL",
                {"cutoff": local.params["time_cutoff_date"]},
            ).fetchall()
        )
    assert set(result.input_example.itertuples(index=False, name=None)) <= holdout
    assert result.input_example.equals(again.input_example)
    np.testing.assert_array_equal(result.plot_actual, again.plot_actual)


def test_a_stage_without_model_rows_is_an_error(dask_cluster) -> None:
    with (
        connected(dask_cluster.address) as cluster,
        pytest.raises(ValueError, match="no rows with both features"),
    ):
        fit_and_evaluate_on_cluster(cluster, [])
