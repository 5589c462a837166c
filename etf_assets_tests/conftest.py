"""Shared fixtures: real Dagster instances, real DuckDB files under tmp_path, real archives."""

from __future__ import annotations

import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from etf_assets.cluster import local as local_cluster
from etf_assets.definitions import defs
from etf_assets.ingest.sample_archive import SampleSpec, generate_folder
from etf_assets.orchestration import instance_db
from etf_assets.orchestration.resources import EtfSettings, warehouse_for

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no test may reach another host

# Real files of the Kaggle dataset with the quirks the tests rely on (see its README.md).
EXCERPT = Path(__file__).resolve().parent / "data" / "kaggle-excerpt"
REPO = Path(__file__).resolve().parents[1]
INGEST_KEYS = ["raw_zip", "price_volume_table", "symbol_table"]
# What Arrow-based readers (pandas, polars, pyarrow) see: plain strings, never dictionaries.
STAGE_ARROW_TYPES = [
    ("Symbol", pa.string()), ("Security Name", pa.string()), ("Date", pa.string()),
    ("Open", pa.float64()), ("High", pa.float64()), ("Low", pa.float64()),
    ("Close", pa.float64()), ("Adj Close", pa.float64()), ("Volume", pa.int64()),
]  # fmt: skip


def zip_folder_plain(folder: Path, archive: Path, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Zip a folder with the standard library only (independent of the project's own zipper)."""
    with zipfile.ZipFile(archive, "w", compression) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return archive


def features_config(**config: object) -> dict[str, object]:
    """Run config for the features_table asset (its FeaturesConfig fields)."""
    return {"ops": {"features_table": {"config": config}}}


@pytest.fixture(scope="session")
def excerpt_dir() -> Path:
    """The real excerpt, read-only: tests that change an archive copy it first."""
    return EXCERPT


@pytest.fixture(scope="session")
def instance_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Postgres server `make run` uses for the Dagster instance, with its files in a temporary
    folder (a Unix socket there, no TCP port); stopped through its pid file at the end."""
    home = tmp_path_factory.mktemp("instance-postgres")
    instance_db.start(home=home)
    yield home
    instance_db.stop(home=home)


@pytest.fixture
def instance_pg_url(instance_postgres: Path) -> str:
    """A fresh database on that server: the DAGSTER_PG_URL of an empty Dagster instance."""
    return instance_db.start(home=instance_postgres, database=f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[local_cluster.LocalCluster]:
    """A real `dask scheduler` and two `dask worker` processes of this venv on 127.0.0.1, their
    files under tmp_path; every process stopped by its pid at the end. Function-scoped: fault
    tests kill workers."""
    cluster = local_cluster.start(tmp_path / "dask", workers=2)
    yield cluster
    cluster.stop()


def write_instance_config(home: Path) -> Path:
    """DAGSTER_HOME as `make run` lays it out: the repo's deploy/dagster.yaml in it."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    return home


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default sample archive, unpacked (generated once per session)."""
    folder = tmp_path_factory.mktemp("sample")
    generate_folder(SampleSpec(), folder)
    return folder


class Pipeline:
    """A data folder, its resources and a real (ephemeral) Dagster instance."""

    def __init__(self, data_dir: Path, source: str) -> None:
        self.data_dir = data_dir
        self.use_source(source)
        self.warehouse = warehouse_for(self.settings)
        self.instance = dg.DagsterInstance.ephemeral()

    def use_source(self, source: Path | str, dask_scheduler: str = "") -> None:
        self.settings = EtfSettings(
            data_dir=str(self.data_dir),
            source=str(source),
            mlflow_tracking_uri=f"sqlite:///{self.data_dir}/mlflow.db",
            dask_scheduler=dask_scheduler,
        )

    def use_cluster(self, scheduler: str) -> None:
        """Do the heavy work on the Dask cluster at `scheduler` from now on."""
        self.use_source(self.settings.source, scheduler)

    @property
    def resources(self) -> dict[str, object]:
        return {"settings": self.settings, "warehouse": self.warehouse}

    @property
    def definitions(self) -> dg.Definitions:
        """The code location's Definitions (jobs, sensors, checks) with this pipeline's resources
        in place of those read from the environment."""
        return dg.Definitions(
            assets=defs.assets,
            asset_checks=defs.asset_checks,
            jobs=defs.jobs,
            schedules=defs.schedules,
            sensors=defs.sensors,
            resources=self.resources,
            executor=defs.executor,
        )

    def materialize(self, keys: list[str], **kwargs: object) -> dg.ExecuteInJobResult:
        """Materialize the assets named `keys` together with their asset checks."""
        assets = [defs.get_assets_def(key) for key in keys]
        checks = [
            check
            for check in defs.asset_checks or []
            if any(spec.asset_key.path[-1] in keys for spec in check.check_specs)
        ]
        return dg.materialize(
            [*assets, *checks], resources=self.resources, instance=self.instance, **kwargs
        )

    def ingest(self) -> dg.ExecuteInJobResult:
        return self.materialize(INGEST_KEYS)

    def features(self, symbols: list[str] | None = None, **kwargs: object) -> dg.ExecuteInJobResult:
        """Materialize the features of `symbols` (default: every registered key) in one run."""
        keys = self.instance.get_dynamic_partitions("symbols")
        chosen = sorted(symbols) if symbols is not None else keys
        order = {key: i for i, key in enumerate(keys)}
        first, last = min(chosen, key=order.get), max(chosen, key=order.get)
        return self.materialize(
            ["features_table"],
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
            **kwargs,
        )

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(self.warehouse.database, read_only=True)

    def query(self, sql: str, params: object = None) -> list[tuple]:
        with self.connect() as con:
            return con.execute(sql, params).fetchall()


@pytest.fixture
def pipeline_factory(tmp_path: Path):
    def make(source: Path | str, name: str = "data") -> Pipeline:
        return Pipeline(tmp_path / name, str(source))

    return make
