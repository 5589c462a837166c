"""Configuration of a deployment: where data lives, which archive to load, which MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from etf_assets.constants import FEATURES_STAGE, PRICES_STAGE, WAREHOUSE_FILE


class EtfSettings(dg.ConfigurableResource):
    """Where the pipeline keeps its data, which archive it loads and which MLflow store it uses."""

    data_dir: str
    source: str = "auto"
    mlflow_tracking_uri: str = ""

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
        return self.mlflow_tracking_uri or f"sqlite:///{(self.data_path / 'mlflow.db').resolve()}"


def settings_from_env() -> EtfSettings:
    """ETF_DATA_DIR (default ./data), ETF_SOURCE (default auto) and MLFLOW_TRACKING_URI.

    Read when the code location loads, not through dg.EnvVar: the warehouse path is derived from
    the data folder, and EnvVar can neither default nor be composed into another value.
    """
    return EtfSettings(
        data_dir=str(Path(os.environ.get("ETF_DATA_DIR") or "data").resolve()),
        source=os.environ.get("ETF_SOURCE") or "auto",
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or "",
    )


def warehouse_for(settings: EtfSettings) -> DuckDBResource:
    return DuckDBResource(database=str(settings.data_path / WAREHOUSE_FILE))
