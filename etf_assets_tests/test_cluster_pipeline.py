"""The whole pipeline through Dagster on a real Dask cluster (a `dask scheduler` and two
`dask worker` processes on 127.0.0.1) against the same pipeline in-process: equal tables,
Parquet stages, rejected rows and model, both workers used, a worker killed mid-run, and a
scheduler that is not there."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pytest

from etf_assets.cluster import local as local_cluster
from etf_assets.cluster.local import LocalCluster, free_port
from etf_assets.constants import (
    FEATURES_TABLE,
    MODEL_ALIAS,
    MODEL_NAME,
    PRICE_VOLUME_TABLE,
    REJECTED_ROWS_TABLE,
    SYMBOL_TABLE,
)
from etf_assets.ingest.sample_archive import SampleSpec, generate_folder
from etf_assets_tests.conftest import Pipeline, features_config

TABLES = [PRICE_VOLUME_TABLE, REJECTED_ROWS_TABLE, SYMBOL_TABLE, FEATURES_TABLE]
STAGES = ["parquet/prices", "parquet/features"]
# Small batches, so that the features of a sample archive are several tasks.
FEATURES_CONFIG = features_config(batch_rows=8_000)


def _run_everything(pipeline: Pipeline) -> dict[str, dict]:
    """Ingest, features over every symbol and the model, as `make run` does; by asset, the
    metadata of what the run did (the unpartitioned materializations, and the observation that
    carries a partitioned run's facts)."""
    metadata = {}
    for result in (
        pipeline.ingest(),
        pipeline.features(run_config=FEATURES_CONFIG),
        pipeline.materialize(["poly_model"]),
    ):
        assert result.success
        for event in result.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            if materialization.partition is None:
                metadata[materialization.asset_key.path[-1]] = materialization.metadata
        for event in result.get_asset_observation_events():
            observation = event.asset_observation_data.asset_observation
            metadata[observation.asset_key.path[-1]] = observation.metadata
    return metadata


def _differences(left: Path, right: Path, query: str) -> int:
    """Rows of `query` (over `{data}`) in one data folder and not the other, as multisets."""
    con = duckdb.connect()
    a, b = query.format(data=left), query.format(data=right)
    return con.execute(
        f"SELECT (SELECT count(*) FROM ({a} EXCEPT ALL {b})) + "
        f"(SELECT count(*) FROM ({b} EXCEPT ALL {a}))"
    ).fetchone()[0]


def assert_same_results(local: Pipeline, clustered: Pipeline) -> None:
    con = duckdb.connect()
    con.execute(f"ATTACH '{local.warehouse.database}' AS l (READ_ONLY)")
    con.execute(f"ATTACH '{clustered.warehouse.database}' AS c (READ_ONLY)")
    for table in TABLES:
        rows = con.execute(f"SELECT count(*) FROM l.{table}").fetchone()[0]
        differing = con.execute(
            f"""SELECT (SELECT count(*) FROM (FROM l.{table} EXCEPT ALL FROM c.{table}))
                     + (SELECT count(*) FROM (FROM c.{table} EXCEPT ALL FROM l.{table}))"""
        ).fetchone()[0]
        assert rows > 0 or table == REJECTED_ROWS_TABLE
        assert differing == 0, f"{table}: {differing} rows differ"
    for stage in STAGES:
        differing = _differences(
            local.data_dir, clustered.data_dir, f"FROM read_parquet('{{data}}/{stage}/*.parquet')"
        )
        assert differing == 0, f"{stage}: {differing} rows differ"
    local_model, cluster_model = (_champion(p) for p in (local, clustered))
    for attribute in ("coef_", "intercept_"):
        np.testing.assert_allclose(
            getattr(cluster_model.named_steps["linear"], attribute),
            getattr(local_model.named_steps["linear"], attribute),
            rtol=1e-9,
        )


def _champion(pipeline: Pipeline):
    mlflow.set_tracking_uri(pipeline.settings.tracking_uri)
    try:
        return mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@{MODEL_ALIAS}")
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample with every quirk, of about 40 files: enough for several shards and buckets."""
    folder = tmp_path_factory.mktemp("cluster-sample")
    generate_folder(SampleSpec(stocks=24, etfs=16, rows=900, seed=7), folder)
    return folder


@pytest.fixture(scope="module")
def local_run(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    pipeline = Pipeline(tmp_path_factory.mktemp("local") / "data", str(archive))
    _run_everything(pipeline)
    return pipeline


def test_a_cluster_run_equals_the_local_run_and_uses_both_workers(
    archive: Path, local_run: Pipeline, dask_cluster: LocalCluster, pipeline_factory
) -> None:
    clustered = pipeline_factory(archive, "clustered")
    clustered.use_cluster(dask_cluster.address)
    metadata = _run_everything(clustered)

    assert_same_results(local_run, clustered)
    for asset in (PRICE_VOLUME_TABLE, FEATURES_TABLE, "poly_model"):
        workers = metadata[asset]["dask_workers"].value
        assert len(workers) == 2, f"{asset} ran on {workers}"
        assert metadata[asset]["dask_tasks"].value >= 2


def test_a_worker_killed_while_it_holds_a_task_costs_time_not_data(
    archive: Path, local_run: Pipeline, dask_cluster: LocalCluster, pipeline_factory
) -> None:
    from distributed import Client

    clustered = pipeline_factory(archive, "clustered")
    clustered.use_cluster(dask_cluster.address)
    victim = dask_cluster.workers[0]
    killed = threading.Event()

    def kill_the_first_worker_that_holds_a_task() -> None:
        victim_address = next(
            a for a, pid in _worker_pids(dask_cluster.address).items() if pid == victim.pid
        )
        with Client(dask_cluster.address, set_as_default=False) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed.is_set():
                if client.processing(workers=[victim_address]).get(victim_address):
                    os.kill(victim.pid, signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.01)

    killer = threading.Thread(target=kill_the_first_worker_that_holds_a_task, daemon=True)
    killer.start()
    _run_everything(clustered)
    killer.join(timeout=5)

    assert killed.is_set(), "the worker never held a task"
    assert victim.wait(timeout=5) == -signal.SIGKILL
    assert_same_results(local_run, clustered)


def test_a_scheduler_that_cannot_be_reached_fails_first_and_changes_nothing(
    archive: Path, pipeline_factory
) -> None:
    pipeline = pipeline_factory(archive)
    assert pipeline.ingest().success
    before = pipeline.query(f"SELECT count(*), sum(volume) FROM {PRICE_VOLUME_TABLE}")
    stage_files = sorted((pipeline.data_dir / "parquet/prices").rglob("*"))
    address = f"tcp://127.0.0.1:{free_port()}"
    pipeline.use_cluster(address)

    result = pipeline.materialize(["price_volume_table"], raise_on_error=False)

    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert address in message and "ETF_DASK_SCHEDULER" in message
    assert pipeline.query(f"SELECT count(*), sum(volume) FROM {PRICE_VOLUME_TABLE}") == before
    assert sorted((pipeline.data_dir / "parquet/prices").rglob("*")) == stage_files


def test_a_worker_that_joins_mid_run_takes_tasks(
    archive: Path, local_run: Pipeline, tmp_path: Path, pipeline_factory
) -> None:
    cluster = local_cluster.start(tmp_path / "dask", workers=1)
    try:
        clustered = pipeline_factory(archive, "clustered")
        clustered.use_cluster(cluster.address)
        started = threading.Event()

        def add_a_worker_once_the_run_started() -> None:
            from distributed import Client

            with Client(cluster.address, set_as_default=False) as client:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    if any(client.processing().values()):
                        cluster.add_worker()
                        started.set()
                        return
                    time.sleep(0.01)

        joiner = threading.Thread(target=add_a_worker_once_the_run_started, daemon=True)
        joiner.start()
        metadata = _run_everything(clustered)
        joiner.join(timeout=5)
        pids = _worker_pids(cluster.address)
    finally:
        cluster.stop()

    assert started.is_set(), "no task ever ran"
    joined = next(address for address, pid in pids.items() if pid == cluster.workers[1].pid)
    workers_used = {
        worker
        for facts in metadata.values()
        if "dask_workers" in facts
        for worker in facts["dask_workers"].value
    }
    assert joined in workers_used
    assert_same_results(local_run, clustered)


def _worker_pids(address: str) -> dict[str, int]:
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        return client.run(os.getpid)
