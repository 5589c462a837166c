"""`make run`'s runner, as a user's shell runs it: one process, the Postgres instance, three runs
that the instance (and so `make dev`) shows afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

from etf_assets.cluster.local import free_port
from etf_assets.ingest.sample_archive import SampleSpec, generate_folder
from etf_assets_tests.conftest import REPO, write_instance_config


def test_make_run_leaves_three_runs_and_every_partition(tmp_path: Path, instance_pg_url: str):
    source = tmp_path / "archive"
    generate_folder(SampleSpec(stocks=6, etfs=2, rows=120, seed=3), source)
    data_dir = tmp_path / "data"
    home = write_instance_config(data_dir / "dagster_home")
    env = {
        **os.environ,
        "ETF_DATA_DIR": str(data_dir),
        "ETF_SOURCE": str(source),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": instance_pg_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "etf_assets.orchestration.run_pipeline"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Results under {data_dir}" in done.stdout

    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT DISTINCT symbol FROM features_table").fetchall()
    symbols = {row[0] for row in rows}
    os.environ["DAGSTER_PG_URL"] = instance_pg_url
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            assert sorted(run.job_name for run in runs) == [
                "features_job",
                "ingest_job",
                "train_job",
            ]
            assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
            materialized = instance.get_materialized_partitions(dg.AssetKey("features_table"))
            assert materialized == symbols and len(symbols) >= 7
            assert instance.get_latest_materialization_event(dg.AssetKey("poly_model"))
    finally:
        del os.environ["DAGSTER_PG_URL"]


def test_a_dask_scheduler_that_does_not_answer_stops_make_run_before_any_run(
    tmp_path: Path, instance_pg_url: str
) -> None:
    data_dir = tmp_path / "data"
    home = write_instance_config(data_dir / "dagster_home")
    address = f"tcp://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "etf_assets.orchestration.run_pipeline"],
        cwd=REPO,
        env={
            **os.environ,
            "ETF_DATA_DIR": str(data_dir),
            "ETF_SOURCE": "sample",
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": instance_pg_url,
            "ETF_DASK_SCHEDULER": address,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: Cannot reach the Dask scheduler at {address}"), done.stderr
    assert "Traceback" not in done.stderr
    assert not (data_dir / "raw").exists() and not (data_dir / "warehouse.duckdb").exists()
    os.environ["DAGSTER_PG_URL"] = instance_pg_url
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_runs() == []
    finally:
        del os.environ["DAGSTER_PG_URL"]
