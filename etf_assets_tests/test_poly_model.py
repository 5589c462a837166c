"""poly_model materialized twice by Dagster on a generated features_table, then read back from the
MLflow store (sqlite under tmp_path): run, metrics, artifacts, registered versions, alias. And the
end-to-end training it wraps, without Dagster."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource
from mlflow import MlflowClient

from etf_assets.constants import EXPERIMENT_NAME, FEATURE_COLUMNS, MODEL_ALIAS, MODEL_NAME
from etf_assets.model.evaluation import Evaluation, TrainingResult
from etf_assets.model.report import summarize_holdout
from etf_assets.model.tracking import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    METRICS_LOG,
    PREDICTED_PLOT,
    RESIDUALS_PLOT,
    artifact_location,
    experiment_url,
    open_experiment,
    redact_uri,
    run_url,
)
from etf_assets.model.train import train_and_register
from etf_assets.orchestration.assets.model import poly_model
from etf_assets.orchestration.resources import EtfSettings
from etf_assets_tests.model_fixtures import (
    EXPECTED_METRIC_NAMES,
    features_frame,
    true_volume,
    write_features_table,
)

CHAMPION = f"models:/{MODEL_NAME}@{MODEL_ALIAS}"


class Trained:
    """A data folder with a features_table, materialized twice."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.tracking_uri = f"sqlite:///{data_dir}/mlflow.db"
        database = write_features_table(data_dir / "warehouse.duckdb", features_frame(noise=0.01))
        self.resources = {
            "settings": EtfSettings(data_dir=str(data_dir), mlflow_tracking_uri=self.tracking_uri),
            "warehouse": DuckDBResource(database=str(database)),
        }
        self.env_before = os.environ.get("MLFLOW_TRACKING_URI")
        self.runs = [dg.materialize([poly_model], resources=self.resources) for _ in range(2)]
        self.client = MlflowClient(tracking_uri=self.tracking_uri)

    def metadata(self, run: int) -> dict[str, object]:
        [event] = self.runs[run].get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def run_id(self, run: int) -> str:
        return str(self.metadata(run)["mlflow_run_id"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return Trained(tmp_path_factory.mktemp("model_data"))


@pytest.fixture
def tracking(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow's module-level API (models:/ URIs) pointed at the test store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.tracking_uri)
    yield


def test_materializations_succeed_and_link_the_run(trained: Trained) -> None:
    assert all(run.success for run in trained.runs)
    for run, version in ((0, 1), (1, 2)):
        metadata = trained.metadata(run)
        run_id = trained.run_id(run)
        experiment_id = trained.client.get_run(run_id).info.experiment_id
        assert metadata["mlflow_run"] == (
            f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"
            "?workflowType=machine_learning"
        )
        assert metadata["mlflow_tracking_uri"] == trained.tracking_uri
        assert metadata["model_version"] == version
        assert metadata["model_uri"] == f"models:/{MODEL_NAME}/{version}"
        assert metadata["served_as"] == CHAMPION
        for headline in ("holdout_rmse", "holdout_mae", "holdout_r2", "holdout_r2_leakage_free"):
            assert math.isfinite(metadata[headline])
        assert metadata["holdout_r2"] > 0.99  # the data follow the model's polynomial
        assert "| lagged | time | poly |" in metadata["metrics"]


def test_champion_loads_from_the_registry_and_predicts(trained: Trained, tracking: None) -> None:
    model = mlflow.sklearn.load_model(CHAMPION)
    assert [name for name, _ in model.steps] == ["scale", "poly", "linear"]
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            FEATURE_COLUMNS[0]: rng.uniform(1e4, 1e6, 50),
            FEATURE_COLUMNS[1]: rng.uniform(5.0, 100.0, 50),
        }
    )
    truth = true_volume(frame[FEATURE_COLUMNS[0]].to_numpy(), frame[FEATURE_COLUMNS[1]].to_numpy())
    # The training volumes carry 1% noise: within 2%, or 2,000 shares for small volumes.
    np.testing.assert_allclose(model.predict(frame), truth, rtol=0.02, atol=2_000)
    inputs = mlflow.pyfunc.load_model(CHAMPION).metadata.get_input_schema().input_names()
    assert inputs == list(FEATURE_COLUMNS)


def test_pyfunc_champion_takes_integer_and_float_columns(trained: Trained, tracking: None) -> None:
    """What a generic MLflow consumer gets: `mlflow.pyfunc.load_model(...).predict(df)` on the
    problem statement's example (whole numbers, so int64 columns) and on floats, in any column
    order, predicting what the scikit-learn pipeline predicts for the same numbers."""
    served = mlflow.pyfunc.load_model(CHAMPION)
    pipeline = mlflow.sklearn.load_model(CHAMPION)
    whole = pd.DataFrame(
        {
            FEATURE_COLUMNS[0]: [12345, 250_000, 3_000_000, 45_000_000],
            FEATURE_COLUMNS[1]: [25, 7, 130, 61],
        }
    )
    assert list(whole.dtypes) == [np.dtype("int64")] * 2
    expected = pipeline.predict(whole.astype("float64"))
    np.testing.assert_allclose(np.asarray(served.predict(whole)), expected, rtol=1e-12)

    floats = whole.astype("float64") + 0.5
    np.testing.assert_allclose(
        np.asarray(served.predict(floats)), pipeline.predict(floats), rtol=1e-12
    )
    reordered = floats[list(reversed(FEATURE_COLUMNS))]
    np.testing.assert_allclose(
        np.asarray(served.predict(reordered)), pipeline.predict(floats), rtol=1e-12
    )
    with pytest.raises(ValueError, match="could not convert string to float"):
        served.predict(whole.astype({FEATURE_COLUMNS[0]: str}).replace({"12345": "lots"}))


def test_run_holds_params_metrics_description_and_artifacts(trained: Trained) -> None:
    run = trained.client.get_run(trained.run_id(1))
    experiment = trained.client.get_experiment(run.info.experiment_id)
    assert experiment.name == EXPERIMENT_NAME
    params, metrics = run.data.params, run.data.metrics
    assert params["degree"] == "2"
    for key in (
        "data_snapshot_id",
        "time_cutoff_date",
        "rows_time_train",
        "rows_time_holdout",
        "rows_random_train",
        "rows_random_test",
        "rows_features_table",
        "random_split_seed",
    ):
        assert params[key], key
    assert params["random_split_seed"] == "42"
    assert EXPECTED_METRIC_NAMES <= set(metrics)
    assert {"load_seconds", "fit_evaluate_seconds"} <= set(metrics)
    description = run.data.tags["mlflow.note.content"]
    assert "leak" in description and f"{metrics['lagged_time_poly_r2']:.4f}" in description
    # The data follow the model's polynomial: it wins, and the description says by how much.
    lead = metrics["time_poly_r2"] - max(metrics["time_linear_r2"], metrics["time_moving_avg_r2"])
    assert lead > 0.001
    assert f"The polynomial has the best R^2, {lead:.4f} ahead of the next" in description
    gain = metrics["time_poly_r2"] - metrics["time_moving_avg_r2"]
    assert f"The polynomial beats the baseline on every measure (R^2 {gain:+.4f}" in description
    assert run.data.tags["dagster_run_id"] == trained.runs[1].run_id

    artifacts = {a.path for a in trained.client.list_artifacts(run.info.run_id)}
    assert METRICS_LOG in artifacts
    plots = {a.path for a in trained.client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {PREDICTED_PLOT, RESIDUALS_PLOT}
    folder = Path(trained.client.download_artifacts(run.info.run_id, "", str(trained.data_dir)))
    for plot in plots:
        assert (folder / plot).read_bytes().startswith(b"\x89PNG")
    lines = [json.loads(line) for line in (folder / METRICS_LOG).read_text().splitlines()]
    assert {line["name"] for line in lines} == EXPECTED_METRIC_NAMES
    for line in lines:
        assert line["value"] == pytest.approx(metrics[line["name"]])
        assert line["run_id"] == run.info.run_id
        # What differs from line to line first, what every line shares last: readable as text.
        keys = list(line)
        assert keys[:2] == ["name", "value"] and keys[-2:] == ["run_id", "logged_at"]


def test_artifacts_live_next_to_the_store_not_in_the_working_directory(trained: Trained) -> None:
    artifacts = (trained.data_dir / "mlartifacts").resolve()
    experiment = trained.client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment.artifact_location == artifacts.as_uri()
    default = trained.client.get_experiment("0")  # the store's Default experiment
    assert default.name == "Default"
    assert default.artifact_location == (artifacts / "0").as_uri()
    assert artifacts.is_dir()
    assert not Path("mlruns").exists() and not Path("mlartifacts").exists()


def test_experiment_declares_itself_a_model_training_experiment(trained: Trained) -> None:
    experiment = trained.client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_an_experiment_from_before_gets_the_tag(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    created = client.create_experiment(EXPERIMENT_NAME)  # as earlier versions created it
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(created).tags
    assert open_experiment(uri) == created
    assert client.get_experiment(created).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_registered_model_says_what_it_predicts_and_where_its_metrics_are(
    trained: Trained,
) -> None:
    description = trained.client.get_registered_model(MODEL_NAME).description
    experiment_id = trained.client.get_experiment_by_name(EXPERIMENT_NAME).experiment_id
    for words in (
        "Predicts a day's trading **volume**",
        "`vol_moving_avg`",
        "`adj_close_rolling_med`",
        f"`models:/{MODEL_NAME}@{MODEL_ALIAS}`",
        f"experiment `{EXPERIMENT_NAME}`, id {experiment_id}",
        "`metrics.jsonl`",
        "integers or floats",
    ):
        assert words in description, words


def test_second_training_moves_the_alias_to_the_new_version(trained: Trained) -> None:
    champion = trained.client.get_model_version_by_alias(MODEL_NAME, MODEL_ALIAS)
    assert str(champion.version) == "2"
    assert champion.run_id == trained.run_id(1)
    assert champion.tags["data_snapshot_id"] == trained.metadata(1)["data_snapshot_id"]
    first = trained.client.get_model_version(MODEL_NAME, "1")
    assert first.run_id == trained.run_id(0) and first.aliases == []
    # Same data, same model: the second version predicts as the first.
    assert trained.metadata(0)["data_snapshot_id"] == trained.metadata(1)["data_snapshot_id"]
    assert trained.metadata(0)["holdout_rmse"] == pytest.approx(trained.metadata(1)["holdout_rmse"])


def test_training_leaves_the_process_tracking_uri_alone(trained: Trained) -> None:
    assert os.environ.get("MLFLOW_TRACKING_URI") == trained.env_before
    assert trained.tracking_uri not in mlflow.get_tracking_uri()


def test_store_locations_run_links_and_redaction() -> None:
    assert redact_uri("postgresql://etl:s3cret@db:5432/mlflow") == (
        "postgresql://etl:***@db:5432/mlflow"
    )
    assert redact_uri("sqlite:////data/mlflow.db") == "sqlite:////data/mlflow.db"
    assert artifact_location("sqlite:////data/x/mlflow.db") == "file:///data/x/mlartifacts"
    assert artifact_location("http://tracking:5000") is None
    assert artifact_location("databricks") is None
    assert run_url("sqlite:////d/mlflow.db", "3", "abc") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    assert run_url("https://mlflow.example.com/", "3", "abc") == (
        "https://mlflow.example.com/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    assert experiment_url("sqlite:////d/mlflow.db", "3") == (
        "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    )


def test_a_store_that_cannot_be_opened_fails_the_training_before_the_fit(tmp_path: Path) -> None:
    # Ten days per symbol: no row has both features, so a fit would fail with its own error.
    database = write_features_table(
        tmp_path / "warehouse.duckdb", features_frame(symbols=2, days=10)
    )
    warehouse = DuckDBResource(database=str(database))
    (tmp_path / "a_file").write_text("")  # no store can be created under a file
    with pytest.raises(OSError, match="a_file"):
        train_and_register(warehouse, f"sqlite:///{tmp_path}/a_file/mlflow.db")
    with pytest.raises(ValueError, match="no rows with both features"):
        train_and_register(warehouse, f"sqlite:///{tmp_path}/store/mlflow.db")


def holdout_result(scores: dict[str, tuple[float, float, float]]) -> TrainingResult:
    """A training result whose time-holdout scores are `model -> (R^2, MAE, RMSE)`, for both
    feature sets (only the metrics are read)."""
    evaluations = [
        Evaluation(features, "time", model, 800, 200, {"r2": r2, "mae": mae, "rmse": rmse})
        for features in ("same_day", "lagged")
        for model, (r2, mae, rmse) in scores.items()
    ]
    return TrainingResult(None, evaluations, {}, np.array([]), np.array([]), pd.DataFrame())


def test_the_summary_says_when_the_baseline_is_as_good() -> None:
    """The full-scale case: the same R^2 to four decimals, the baseline's MAE the lowest."""
    result = holdout_result(
        {
            "poly": (0.69583, 2_000_000.0, 4_000_000.0),
            "linear": (0.69581, 2_010_000.0, 4_000_100.0),
            "moving_avg": (0.69577, 1_700_000.0, 4_000_400.0),
        }
    )
    text = summarize_holdout(result)
    assert text.startswith(
        "All three score nearly the same R^2 (the polynomial 0.6958, the plain linear model "
        "0.6958 and the moving-average baseline 0.6958)"
    )
    margin = 1 - 1_700_000 / 2_000_000
    assert f"The moving-average baseline has the lowest MAE, {margin:.1%} below the polynomial" in (
        text
    )
    assert "By RMSE they are about level" in text
    mae_change = 2_000_000 / 1_700_000 - 1
    assert (
        "The polynomial does not beat the baseline: level on R^2 and RMSE, worse on MAE "
        f"(R^2 +0.0001, MAE {mae_change:+.1%}, RMSE -0.0%" in text
    )


def test_the_summary_names_the_winner_and_its_lead() -> None:
    result = holdout_result(
        {
            "poly": (0.80, 900.0, 2_000.0),
            "linear": (0.75, 1_000.0, 2_100.0),
            "moving_avg": (0.70, 800.0, 2_500.0),
        }
    )
    text = summarize_holdout(result, "lagged")
    assert "The polynomial has the best R^2, 0.0500 ahead of the next (the polynomial 0.8000" in (
        text
    )
    assert "The moving-average baseline has the lowest MAE, 11.1% below the polynomial" in text
    assert "The polynomial has the lowest RMSE, 4.8% below the plain linear model" in text
    assert "The measures disagree: the polynomial is better on R^2 and RMSE, worse on MAE" in text
