"""One end-to-end training, without Dagster: load the features, fit and evaluate, log the MLflow
run, register the model and move the `champion` alias. The `poly_model` asset and the training
benchmark both run this."""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import duckdb

from etf_assets.constants import MODEL_ALIAS, MODEL_NAME
from etf_assets.model import tracking
from etf_assets.model.evaluation import TrainingResult
from etf_assets.model.fit import fit_and_evaluate
from etf_assets.model.frame import load_training_frame, profile_features


class WarehouseAccess(Protocol):
    """What opens connections to the DuckDB warehouse, e.g. the asset's `DuckDBResource`."""

    def get_connection(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...


@dataclass(frozen=True)
class ModelTraining:
    """One end-to-end training: the result, where it was logged, and how long each step took."""

    result: TrainingResult
    tracked: tracking.TrackedModel
    data_snapshot_id: str
    seconds: dict[str, float] = field(default_factory=dict)


def train_and_register(
    warehouse: WarehouseAccess,
    tracking_uri: str,
    log: logging.Logger | None = None,
    tags: dict[str, str] | None = None,
    run_name: str | None = None,
) -> ModelTraining:
    """Load the features, fit and evaluate, log the run, register the model, move the alias.

    The MLflow store is opened first (on first use its tables are created), so that a store that
    cannot be reached fails the run before the work; the warehouse connection is closed as soon
    as the rows are in memory.

    Args:
        warehouse: where `features_table` is.
        tracking_uri: the MLflow store.
        log: where progress goes (the asset passes Dagster's logger).
        tags, run_name: of the MLflow run (e.g. the Dagster run that trained).
    """
    log = log or logging.getLogger(__name__)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    experiment_id = tracking.open_experiment(tracking_uri)
    seconds["open_store_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    with warehouse.get_connection() as con:
        profile = profile_features(con)
        frame = load_training_frame(con, profile)
    seconds["load_seconds"] = time.perf_counter() - start
    log.info(
        f"loaded {frame.rows:,} model rows of {profile.rows:,} in {seconds['load_seconds']:.1f} s "
        f"(lag from {frame.lag_source})"
    )

    start = time.perf_counter()
    result = fit_and_evaluate(frame)
    del frame
    seconds["fit_evaluate_seconds"] = time.perf_counter() - start
    log.info(f"fitted and evaluated in {seconds['fit_evaluate_seconds']:.1f} s")

    start = time.perf_counter()
    tracked = tracking.log_training(
        result,
        tracking_uri,
        params={"data_snapshot_id": profile.snapshot_id, "rows_features_table": profile.rows},
        metrics=seconds,
        tags=tags,
        run_name=run_name,
        experiment_id=experiment_id,
    )
    seconds["log_seconds"] = time.perf_counter() - start
    log.info(
        f"logged MLflow run {tracked.run_id}; {MODEL_NAME} version {tracked.model_version} "
        f"is now @{MODEL_ALIAS} ({seconds['log_seconds']:.1f} s)"
    )
    return ModelTraining(result, tracked, profile.snapshot_id, seconds)
