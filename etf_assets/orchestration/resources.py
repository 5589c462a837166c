"""Configuration of a deployment: where data lives, which archive to load, which MLflow store."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from etf_assets.cluster.tasks import (
    Cluster,
    ClusterUnavailableError,
    connected,
    scheduler_from_env,
)
from etf_assets.constants import DUCKDB_CONFIG, FEATURES_STAGE, PRICES_STAGE, WAREHOUSE_FILE
from etf_assets.locations import TRACKING_URI_ENV, data_dir_from_env, tracking_uri_for


class EtfSettings(dg.ConfigurableResource):
    """Where the pipeline keeps its data, which archive it loads, which MLflow store it uses and
    which Dask scheduler, if any, does the heavy work."""

    data_dir: str
    source: str = "auto"
    mlflow_tracking_uri: str = ""
    dask_scheduler: str = ""

    @contextmanager
    def cluster(self) -> Iterator[Cluster | None]:
        """The Dask cluster of `dask_scheduler`, connected, or None to work in this process.

        Assets enter it before they write anything: a scheduler that cannot be reached then
        fails the step with its address and leaves every table and stage as it was.
        """
        if not self.dask_scheduler:
            yield None
            return
        with ExitStack() as stack:
            try:
                cluster = stack.enter_context(connected(self.dask_scheduler))
            except ClusterUnavailableError as exc:
                raise dg.Failure(description=str(exc)) from exc
            yield cluster

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def raw_dir(self) -> Path:
        return self.data_path / "raw"

    @property
    def manifest_path(self) -> Path:
        return self.raw_dir / "manifest.json"

    @property
    def prices_stage(self) -> Path:
        return self.data_path / PRICES_STAGE

    @property
    def features_stage(self) -> Path:
        return self.data_path / FEATURES_STAGE

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or tracking_uri_for(self.data_path)


def settings_from_env() -> EtfSettings:
    """ETF_DATA_DIR (default ./data), ETF_SOURCE (default auto), MLFLOW_TRACKING_URI and
    ETF_DASK_SCHEDULER (default: none, work in-process).

    Read when the code location loads, not through dg.EnvVar: the warehouse path is derived from
    the data folder, and EnvVar can neither default nor be composed into another value.
    """
    return EtfSettings(
        data_dir=str(data_dir_from_env()),
        source=os.environ.get("ETF_SOURCE") or "auto",
        mlflow_tracking_uri=os.environ.get(TRACKING_URI_ENV) or "",
        dask_scheduler=scheduler_from_env(),
    )


class WarehouseLockedError(RuntimeError):
    """Another process holds the warehouse's write lock for longer than we wait."""


class Warehouse(DuckDBResource):
    """The DuckDB warehouse: waits for another process's write lock with a clear message, and
    always closes its connection (also when the asset fails)."""

    lock_timeout_seconds: float = 120.0

    def _connect(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_seconds
        while True:
            try:
                return duckdb.connect(self.database, config=self.connection_config)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise WarehouseLockedError(
                        f"The warehouse {self.database} is held by another process (DuckDB allows "
                        f"one writer per file) and was not released within "
                        f"{self.lock_timeout_seconds:.0f} s. Wait for the other run to finish and "
                        f"retry. DuckDB said: {exc}"
                    ) from exc
                time.sleep(0.5)

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._connect()
        # Progress is logged (etf_assets.storage.progress), not drawn on the run worker's stdout.
        con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")
        try:
            yield con
        finally:
            con.close()


def warehouse_for(settings: EtfSettings) -> Warehouse:
    return Warehouse(
        database=str(settings.data_path / WAREHOUSE_FILE), connection_config=dict(DUCKDB_CONFIG)
    )
