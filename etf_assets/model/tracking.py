"""MLflow side of the model: experiment `etf_volume`, one run per training, the registered model
`etf_volume_model` and its `champion` alias."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import AnyType, ColSpec, Schema

from etf_assets.constants import EXPERIMENT_NAME, FEATURE_COLUMNS, MODEL_ALIAS, MODEL_NAME
from etf_assets.locations import using_tracking_uri
from etf_assets.model.empty_store import build_store, default_template_dir
from etf_assets.model.evaluation import TrainingResult
from etf_assets.model.plots import plot_predicted_vs_actual, plot_residuals
from etf_assets.model.report import describe_run

# Where `make mlflow-ui` serves the UI (mlflow ui on 127.0.0.1:5000) for a local store.
MLFLOW_UI_URL = "http://127.0.0.1:5000"
# How an experiment says it trains models (classic ML), not GenAI apps: the tag and value the
# MLflow UI's own experiment-type selector writes.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# The MLflow 3.17 UI opens an experiment on the view of a per-browser switch, GenAI by default,
# whatever the tag says; this query selects its "Model training" view, whose experiment page is
# the table of training runs.
UI_MODEL_TRAINING = "workflowType=machine_learning"
# Artifacts of a local sqlite store live next to its database file, not in the working directory.
ARTIFACTS_DIR = "mlartifacts"
MODEL_ARTIFACT = "model"
METRICS_LOG = "metrics.jsonl"
PREDICTED_PLOT = "plots/predicted_vs_actual.png"
RESIDUALS_PLOT = "plots/residuals.png"
# Pinned from this environment: saves MLflow's requirement inference, which runs a subprocess.
# skops: the model is saved in skops format (no pickle code execution when it is loaded).
_REQUIREMENTS = ("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops")


@dataclass(frozen=True)
class TrackedModel:
    """Where a training run went: its MLflow run and the registered version it created."""

    tracking_uri: str
    run_id: str
    run_url: str
    model_version: str
    experiment_url: str

    @property
    def model_uri(self) -> str:
        return f"models:/{MODEL_NAME}/{self.model_version}"

    @property
    def display_uri(self) -> str:
        """The tracking URI without a password, for logs and metadata."""
        return redact_uri(self.tracking_uri)


def redact_uri(uri: str) -> str:
    """`uri` with the password of its user part (`user:secret@host`) replaced by `***`."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _sqlite_database(tracking_uri: str) -> Path | None:
    parsed = urlparse(tracking_uri)
    database = unquote(parsed.path[1:])  # sqlite:///relative.db, sqlite:////absolute.db
    if parsed.scheme != "sqlite" or database in ("", ":memory:"):
        return None
    return Path(database)


def artifact_location(tracking_uri: str) -> str | None:
    """`<dir>/mlartifacts` (as a file URI) for a sqlite store `<dir>/<db>`; None (the server or
    MLflow's default decides) for any other store."""
    database = _sqlite_database(tracking_uri)
    if database is None:
        return None
    return (database.parent / ARTIFACTS_DIR).resolve().as_uri()


def create_store(tracking_uri: str, template_dir: Path | None = None) -> bool:
    """Create the sqlite store `tracking_uri` names, if it does not exist yet, with its artifact
    root next to it; True when it was created.

    MLflow creates a missing store on first use, and gives its Default experiment the artifact
    location `./mlruns/0` of whatever the working directory is; created here, the Default
    experiment's artifacts go to `<dir>/mlartifacts/0`, next to the database like every other.
    The store is a copy of an empty one kept in `template_dir` (default: beside the installed
    packages, see `empty_store`), which spares the migrations that build a schema.
    """
    database = _sqlite_database(tracking_uri)
    if database is None or (database.exists() and database.stat().st_size > 0):
        return False
    build_store(database, artifact_location(tracking_uri), template_dir or default_template_dir())
    return True


def _ui_base(tracking_uri: str) -> str:
    """The MLflow UI: the tracking server itself, or `make mlflow-ui` for a local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return MLFLOW_UI_URL


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI, in its model-training view."""
    return (
        f"{_ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}?{UI_MODEL_TRAINING}"
    )


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's page in the MLflow UI, opened on its table of training runs."""
    return f"{_ui_base(tracking_uri)}/#/experiments/{experiment_id}?{UI_MODEL_TRAINING}"


def open_experiment(tracking_uri: str) -> str:
    """The id of experiment `etf_volume` in the store, created (tagged as a model-training
    experiment, its artifacts next to a sqlite store) when missing.

    A missing sqlite store is created first (`create_store`); an experiment created before it was
    tagged gets the tag.
    """
    create_store(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        return client.create_experiment(
            EXPERIMENT_NAME,
            artifact_location=artifact_location(tracking_uri),
            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
        )
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def metrics_log(result: TrainingResult, run_id: str) -> str:
    """The metrics as JSON lines, one object per (features, split, model, metric): the metric's
    name and value first, what it was measured on next, and the fields every line shares last."""
    logged_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    lines = [
        json.dumps(
            {
                "name": f"{e.prefix}_{metric}",
                "value": value,
                "features": e.features,
                "split": e.split,
                "model": e.model,
                "metric": metric,
                "train_rows": e.train_rows,
                "test_rows": e.test_rows,
                "run_id": run_id,
                "logged_at": logged_at,
            }
        )
        for e in result.evaluations
        for metric, value in e.metrics.items()
    ]
    return "\n".join(lines) + "\n"


def model_signature(result: TrainingResult) -> ModelSignature:
    """The two feature columns by name, and the predicted volume (double).

    The features are doubles, but the inputs are declared `Any`: MLflow enforces a `double`
    column by refusing int64 (it converts only integers of up to 32 bits), and a DataFrame built
    from whole numbers, as in the problem statement's own example (`vol_moving_avg=12345`), is
    int64. The pipeline converts numbers itself and refuses anything else (strings, NaN).
    """
    example = result.input_example
    outputs = infer_signature(example, result.pipeline.predict(example)).outputs
    inputs = Schema([ColSpec(AnyType(), name) for name in FEATURE_COLUMNS])
    return ModelSignature(inputs=inputs, outputs=outputs)


def registered_model_description(experiment_id: str) -> str:
    """What `etf_volume_model` is, for its page in the MLflow registry."""
    return "\n".join(
        [
            "Predicts a day's trading **volume** (shares) of a NASDAQ-listed stock or ETF from "
            "two features of its own recent history:",
            "",
            "- `vol_moving_avg`: the mean volume of its 30 most recent trading days, the day "
            "itself included;",
            "- `adj_close_rolling_med`: the median adjusted close over the same 30 days.",
            "",
            "A degree-2 polynomial regression (scikit-learn pipeline: StandardScaler -> "
            "PolynomialFeatures -> LinearRegression), trained by the `poly_model` asset of "
            "etf-pipeline on every symbol of the Kaggle dataset `jacksoncrow/stock-market-dataset`."
            f" The alias `{MODEL_ALIAS}` is the version served: "
            f"`models:/{MODEL_NAME}@{MODEL_ALIAS}`. Input: a DataFrame with those two columns "
            "(integers or floats); output: the predicted volume as a float (the project's Flask "
            "service rounds it and never answers below 0).",
            "",
            "**Metrics** of each version are in the MLflow run that logged it (the version's "
            f"*Source run*, in experiment `{EXPERIMENT_NAME}`, id {experiment_id}): MAE, RMSE and "
            "R^2 on a time holdout (the primary evaluation) and on a random 80/20 split, next to "
            "two baselines and a leakage-free variant, in the run's metrics, its description "
            "(which says which model wins) and its artifact `metrics.jsonl`. `vol_moving_avg` "
            "includes the day's own volume: judge the model as a forecast by the leakage-free "
            "numbers.",
        ]
    )


def _pip_requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in _REQUIREMENTS]


def log_training(
    result: TrainingResult,
    tracking_uri: str,
    params: dict[str, str | int | float] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    run_name: str | None = None,
    experiment_id: str | None = None,
) -> TrackedModel:
    """Log one training as a run of `etf_volume`, register its model as a new version of
    `etf_volume_model` and move the `champion` alias to that version.

    Args:
        result: what `fit.fit_and_evaluate` returned.
        tracking_uri: the MLflow store (`EtfSettings.tracking_uri`).
        params: logged next to the result's own params (e.g. the data snapshot id).
        metrics: logged next to the result's metrics (e.g. durations).
        tags: run tags (e.g. the Dagster run id).
        run_name: the run's name; MLflow picks one when None.
        experiment_id: what `open_experiment(tracking_uri)` returned, if it was called already.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = experiment_id or open_experiment(tracking_uri)
    all_params = {**result.params, **(params or {})}
    pipeline = result.pipeline
    example = result.input_example
    signature = model_signature(result)
    with (
        using_tracking_uri(tracking_uri),
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            description=describe_run(result),
            tags=tags,
        ) as run,
    ):
        run_id = run.info.run_id
        mlflow.log_params(all_params)
        mlflow.log_metrics({**result.metrics, **(metrics or {})})
        mlflow.log_text(metrics_log(result, run_id), METRICS_LOG)
        mlflow.log_figure(
            plot_predicted_vs_actual(result.plot_actual, result.plot_predicted), PREDICTED_PLOT
        )
        mlflow.log_figure(plot_residuals(result.plot_actual, result.plot_predicted), RESIDUALS_PLOT)
        info = mlflow.sklearn.log_model(
            pipeline,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=example,
            registered_model_name=MODEL_NAME,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            pip_requirements=_pip_requirements(),
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(MODEL_NAME, MODEL_ALIAS, version)
    client.update_registered_model(
        MODEL_NAME, description=registered_model_description(experiment_id)
    )
    metrics_now = result.metrics
    client.update_model_version(
        MODEL_NAME,
        version,
        description=f"Degree-{all_params['degree']} polynomial regression of volume on "
        f"vol_moving_avg and adj_close_rolling_med, trained on {all_params['rows_model']:,} rows "
        f"through {all_params['time_holdout_last_date']}. Time holdout: RMSE "
        f"{metrics_now['time_poly_rmse']:,.0f}, R^2 {metrics_now['time_poly_r2']:.4f} "
        f"(leakage-free features: R^2 {metrics_now['lagged_time_poly_r2']:.4f}).",
    )
    for key in ("data_snapshot_id", "time_cutoff_date"):
        if key in all_params:
            client.set_model_version_tag(MODEL_NAME, version, key, str(all_params[key]))
    return TrackedModel(
        tracking_uri=tracking_uri,
        run_id=run_id,
        run_url=run_url(tracking_uri, experiment_id, run_id),
        model_version=version,
        experiment_url=experiment_url(tracking_uri, experiment_id),
    )
