"""The code location loads (in Python, as `etf_assets.defs`, and with the `dagster` CLI), and the
stage packages stay importable without Dagster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from etf_assets.definitions import defs
from etf_assets_tests.conftest import REPO, write_instance_config

DAGSTER = str(Path(sys.executable).with_name("dagster"))
# The logic the serving app and the benchmarks import: one package per stage, and shared storage.
STAGE_PACKAGES = (
    "etf_assets.ingest",
    "etf_assets.features",
    "etf_assets.model",
    "etf_assets.storage",
)


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    assets = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert assets == {
        "raw_zip",
        "price_volume_table",
        "symbol_table",
        "features_table",
        "poly_model",
    }
    assert {"ingest_job", "features_job", "train_job"} <= set(repository.job_names)
    assert {sensor.name for sensor in repository.sensor_defs} == {
        "archive_changed",
        "features_after_ingest",
        "train_after_features",
    }
    assert {schedule.name for schedule in repository.schedule_defs} == {"daily_refresh"}
    assert repository.asset_checks_defs_by_key  # the data-quality checks are part of it


def test_the_package_exposes_the_same_definitions() -> None:
    import etf_assets

    assert etf_assets.defs is defs
    assert "defs" in dir(etf_assets)  # how Dagster finds it with `-m etf_assets`


def test_the_cli_validates_the_code_location(tmp_path: Path, instance_pg_url: str) -> None:
    home = write_instance_config(tmp_path / "dagster_home")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": instance_pg_url,
        "ETF_DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "etf_assets"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Validation successful for code location etf_assets" in output


def test_stage_packages_do_not_import_dagster() -> None:
    """In a fresh interpreter: importing every module of the stage packages loads no Dagster."""
    code = f"""
import importlib, json, pkgutil, sys
import etf_assets
imported = []
for name in {STAGE_PACKAGES!r}:
    package = importlib.import_module(name)
    imported.append(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(module.name)
        imported.append(module.name)
dagster = sorted(m for m in sys.modules if m.split(".")[0].startswith("dagster"))
print(json.dumps({{"imported": imported, "dagster": dagster}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert {"etf_assets.ingest.load_prices", "etf_assets.features.compute"} <= set(
        report["imported"]
    )
    assert any(name.startswith("etf_assets.model.") for name in report["imported"])
    assert report["dagster"] == []
