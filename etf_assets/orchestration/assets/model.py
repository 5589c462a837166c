"""Stage 3: `poly_model`, the volume model trained on all of `features_table`, tracked in MLflow."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from etf_assets.constants import FEATURES_TABLE, MODEL_ALIAS, MODEL_NAME, POLY_MODEL
from etf_assets.orchestration.checks import failed_blocking_checks
from etf_assets.orchestration.disk_guard import failing_clearly_on_full_disk
from etf_assets.orchestration.resources import EtfSettings


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
    # scikit-learn, matplotlib and MLflow are slow to import: only a training pays for them,
    # not every process that loads the code location.
    from etf_assets.model.train import local_store_folder, train_and_register

    run_id = context.run.run_id
    store = local_store_folder(settings.tracking_uri)
    with (
        settings.cluster() as cluster,
        failing_clearly_on_full_disk(
            "logging the model to MLflow",
            [store or settings.data_path],
            f"The MLflow store and the {MODEL_ALIAS} alias are as they were (the run is marked "
            "failed)",
        ),
    ):
        training = train_and_register(
            warehouse,
            settings.tracking_uri,
            log=context.log,
            tags={"dagster_asset": POLY_MODEL, "dagster_run_id": run_id},
            run_name=f"{POLY_MODEL}-{run_id[:8]}",
            cluster=cluster,
            features_stage=settings.features_stage,
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
            **(cluster.work.metadata() if cluster is not None else {}),
        }
    )
