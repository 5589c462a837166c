"""The helper that registers models for tests and benchmarks leaves MLflow's global state alone."""

import os
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression

from serving.schema import FEATURES

from .synthetic import register_model, synthetic_features


@pytest.mark.parametrize("env_uri", [None, "sqlite:////nowhere/elsewhere.db"])
def test_register_model_restores_tracking_uri_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env_uri: str | None
) -> None:
    if env_uri is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)
    before = mlflow.get_tracking_uri()
    features = synthetic_features(20)
    model = LinearRegression().fit(features, features[FEATURES[0]])
    registered = register_model(tmp_path / "store", model, name="tiny")
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_uri
    assert mlflow.get_tracking_uri() == before
    client = MlflowClient(tracking_uri=registered.tracking_uri)
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == registered.version
