"""Stage 3: `poly_model`, the volume model trained on all of `features_table`, tracked in MLflow."""

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg
from dagster_duckdb import DuckDBResource

from etf_assets.constants import FEATURES_TABLE, MODEL_ALIAS, MODEL_NAME, POLY_MODEL
from etf_assets.orchestration.checks import failed_blocking_checks
from etf_assets.orchestration.resources import EtfSettings

if TYPE_CHECKING:
    from etf_assets.model.tracking import TrackedModel
    from etf_assets.model.training import TrainingResult


@dataclass(frozen=True)
class ModelTraining:
    """One end-to-end training: the result, where it was logged, and how long each step took."""

    result: "TrainingResult"
    tracked: "TrackedModel"
    data_rows: int
    data_snapshot_id: str
    seconds: dict[str, float] = field(default_factory=dict)


def train_and_register(
    warehouse: DuckDBResource,
    tracking_uri: str,
    log: logging.Logger | None = None,
    dagster_run_id: str | None = None,
) -> ModelTraining:
    """Load the features, fit and evaluate, log the run, register the model, move the alias.

    The MLflow store is opened first (on first use its tables are created), so that a store that
    cannot be reached fails the run before the work; the warehouse connection is closed as soon
    as the rows are in memory.
    """
    # scikit-learn, matplotlib and MLflow take seconds to import: only a training pays for them,
    # not every process that loads the code location.
    from etf_assets.model import tracking, training

    log = log or logging.getLogger(__name__)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    experiment_id = tracking.open_experiment(tracking_uri)
    seconds["open_store_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    with warehouse.get_connection() as con:
        profile = training.profile_features(con)
        frame = training.load_training_frame(con, profile)
    seconds["load_seconds"] = time.perf_counter() - start
    log.info(
        f"loaded {frame.rows:,} model rows of {profile.rows:,} in {seconds['load_seconds']:.1f} s "
        f"(lag from {frame.lag_source})"
    )

    start = time.perf_counter()
    result = training.train(frame)
    del frame
    seconds["fit_evaluate_seconds"] = time.perf_counter() - start
    log.info(f"fitted and evaluated in {seconds['fit_evaluate_seconds']:.1f} s")

    start = time.perf_counter()
    tags = {"dagster_asset": POLY_MODEL}
    if dagster_run_id:
        tags["dagster_run_id"] = dagster_run_id
    tracked = tracking.log_training(
        result,
        tracking_uri,
        params={"data_snapshot_id": profile.snapshot_id, "rows_features_table": profile.rows},
        metrics=seconds,
        tags=tags,
        run_name=f"{POLY_MODEL}-{dagster_run_id[:8]}" if dagster_run_id else None,
        experiment_id=experiment_id,
    )
    seconds["log_seconds"] = time.perf_counter() - start
    log.info(
        f"logged MLflow run {tracked.run_id}; {MODEL_NAME} version {tracked.model_version} "
        f"is now @{MODEL_ALIAS} ({seconds['log_seconds']:.1f} s)"
    )
    return ModelTraining(result, tracked, profile.rows, profile.snapshot_id, seconds)


@dg.asset(
    name=POLY_MODEL,
    deps=[FEATURES_TABLE],
    group_name="model",
    kinds={"mlflow", "scikitlearn"},
)
def poly_model(
    context: dg.AssetExecutionContext, settings: EtfSettings, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """Degree-2 polynomial regression that predicts a day's `volume` from `vol_moving_avg` and
    `adj_close_rolling_med`, trained on every symbol's rows of `features_table`.

    Evaluated on the most recent 20% of rows (time holdout) and on a random 80/20 split (seed 42),
    next to two baselines (predict `vol_moving_avg`; plain linear regression) and a leakage-free
    variant with features lagged one day (`vol_moving_avg` includes the day's own volume).
    Logged to MLflow (experiment `etf_volume`: params, metrics, plots, metrics.jsonl, model) and
    registered as `etf_volume_model`; the alias `champion` moves to the new version, which
    `serving` loads. Open the run from the `mlflow_run` link (`make mlflow-ui`).

    Refuses to train while the latest evaluation of a blocking `features_table` check failed.
    """
    if failed := failed_blocking_checks(context.instance, FEATURES_TABLE):
        raise dg.Failure(
            description=f"features_table failed its checks {', '.join(failed)} when last "
            "evaluated; re-materialize features_table (all partitions) before training."
        )
    training = train_and_register(
        warehouse, settings.tracking_uri, log=context.log, dagster_run_id=context.run.run_id
    )
    result, tracked = training.result, training.tracked
    metrics = result.metrics
    params = result.params
    return dg.MaterializeResult(
        metadata={
            "mlflow_run": dg.MetadataValue.url(tracked.run_url),
            "mlflow_run_id": tracked.run_id,
            "mlflow_tracking_uri": tracked.display_uri,
            "model_uri": tracked.model_uri,
            "model_version": int(tracked.model_version),
            "served_as": f"models:/{MODEL_NAME}@{MODEL_ALIAS}",
            "holdout_rmse": metrics["time_poly_rmse"],
            "holdout_mae": metrics["time_poly_mae"],
            "holdout_r2": metrics["time_poly_r2"],
            "holdout_r2_leakage_free": metrics["lagged_time_poly_r2"],
            "holdout_r2_moving_avg_baseline": metrics["time_moving_avg_r2"],
            "random_split_r2": metrics["random_poly_r2"],
            "metrics": dg.MetadataValue.md(result.metrics_markdown()),
            "rows_model": params["rows_model"],
            "rows_time_holdout": params["rows_time_holdout"],
            "time_cutoff_date": params["time_cutoff_date"],
            "data_snapshot_id": training.data_snapshot_id,
            **{k: round(v, 2) for k, v in training.seconds.items()},
        }
    )
