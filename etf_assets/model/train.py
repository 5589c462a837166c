"""One end-to-end training, without Dagster: load the features, fit and evaluate, log the MLflow
run, register the model and move the `champion` alias. The `poly_model` asset and the training
benchmark both run this."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import duckdb

from etf_assets.cluster.tasks import Cluster
from etf_assets.constants import MODEL_ALIAS, MODEL_NAME
from etf_assets.model import tracking
from etf_assets.model.evaluation import TrainingResult
from etf_assets.model.fit import fit_and_evaluate
from etf_assets.model.frame import load_training_frame, profile_features
from etf_assets.storage.disk_space import MODEL_RUN_BYTES, SpaceNeed, require_space


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
    cluster: Cluster | None = None,
    features_stage: Path | None = None,
) -> ModelTraining:
    """Load the features, fit and evaluate, log the run, register the model, move the alias.

    The MLflow store opens while the rows load (on first use its tables are created); a store
    that cannot be opened fails the run before the fit. A local store's disk must have room for
    a run first. The warehouse connection is closed as soon as the rows are in memory. If logging
    fails (a full disk), the run's artifacts and model version are removed, the run is marked
    failed and `champion` stays where it was.

    Args:
        warehouse: where `features_table` is.
        tracking_uri: the MLflow store.
        log: where progress goes (the asset passes Dagster's logger).
        tags, run_name: of the MLflow run (e.g. the Dagster run that trained).
        cluster: when given, its workers read the rows from Parquet stage 2 (`features_stage`,
            which holds the rows of `features_table`) and compute the sums the fits are solved
            from; the warehouse only gives the data's profile.
    """
    log = log or logging.getLogger(__name__)
    seconds: dict[str, float] = {}
    start_time_ms = time.time() * 1000
    if (store := local_store_folder(tracking_uri)) is not None:
        require_space([SpaceNeed(store, MODEL_RUN_BYTES, "an MLflow run and its model")])
    # Opening the store (a new store builds its schema) is Python and SQLite work, loading the
    # rows DuckDB's and numpy's: the store opens in a second thread meanwhile. Only then does the
    # fit start, so that a store that cannot be opened fails the run first, and scikit-learn
    # never sees a module the other thread is still importing.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-store") as pool:
        opening = pool.submit(_open_store, tracking_uri)
        start = time.perf_counter()
        with warehouse.get_connection() as con:
            profile = profile_features(con)
            frame = load_training_frame(con, profile) if cluster is None else None
        seconds["load_seconds"] = time.perf_counter() - start
        experiment_id, seconds["open_store_seconds"] = opening.result()

    start = time.perf_counter()
    if frame is not None:
        log.info(
            f"loaded {frame.rows:,} model rows of {profile.rows:,} in "
            f"{seconds['load_seconds']:.1f} s (lag from {frame.lag_source})"
        )
        result = fit_and_evaluate(frame)
        del frame
    else:
        from etf_assets.model.sharded_fit import fit_and_evaluate_on_cluster

        files = sorted(str(path) for path in features_stage.glob("*.parquet"))
        result = fit_and_evaluate_on_cluster(cluster, files)
    seconds["fit_evaluate_seconds"] = time.perf_counter() - start
    log.info(f"fitted and evaluated in {seconds['fit_evaluate_seconds']:.1f} s")

    start = time.perf_counter()
    champion = _champion_version(tracking_uri)
    try:
        tracked = tracking.log_training(
            result,
            tracking_uri,
            params={"data_snapshot_id": profile.snapshot_id, "rows_features_table": profile.rows},
            metrics=seconds,
            tags=tags,
            run_name=run_name,
            experiment_id=experiment_id,
        )
    except BaseException:
        _discard_failed_runs(
            tracking_uri, experiment_id, int(start_time_ms), run_name, champion, log
        )
        raise
    seconds["log_seconds"] = time.perf_counter() - start
    log.info(
        f"logged MLflow run {tracked.run_id}; {MODEL_NAME} version {tracked.model_version} "
        f"is now @{MODEL_ALIAS} ({seconds['log_seconds']:.1f} s)"
    )
    return ModelTraining(result, tracked, profile.snapshot_id, seconds)


def _open_store(tracking_uri: str) -> tuple[str, float]:
    """The experiment's id in the store, with the seconds it took to open the store."""
    start = time.perf_counter()
    return tracking.open_experiment(tracking_uri), time.perf_counter() - start


def local_store_folder(tracking_uri: str) -> Path | None:
    """The folder of a sqlite or file MLflow store (its artifacts go beside it), else None."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        database = unquote(parsed.path[1:])  # sqlite:///relative.db, sqlite:////absolute.db
        return Path(database).parent if database not in ("", ":memory:") else None
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def _champion_version(tracking_uri: str) -> str | None:
    from mlflow import MlflowClient

    try:
        return (
            MlflowClient(tracking_uri).get_model_version_by_alias(MODEL_NAME, MODEL_ALIAS).version
        )
    except Exception:  # no such model or alias yet
        return None


def _discard_failed_runs(
    tracking_uri: str,
    experiment_id: str,
    since_ms: int,
    run_name: str | None,
    champion: str | None,
    log: logging.Logger,
) -> None:
    """Undo what a failed `log_training` wrote: the artifacts of the runs it started (first: on
    a full disk they are the room the store needs for the rest), their model versions, and the
    `champion` alias if it moved; the runs stay, marked FAILED. Never raises."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        runs = client.search_runs(
            [experiment_id], filter_string=f"attributes.start_time >= {since_ms}"
        )
    except Exception as exc:
        log.warning(f"could not look up the failed MLflow run to clean it up: {exc}")
        return
    for run in runs:
        if run_name is not None and run.info.run_name != run_name:
            continue
        run_id = run.info.run_id
        _remove_local_artifacts(run.info.artifact_uri)  # <run id>/artifacts
        with contextlib.suppress(Exception):
            for model in client.search_logged_models(
                [experiment_id], filter_string=f"source_run_id = '{run_id}'"
            ):
                _remove_local_artifacts(model.artifact_location)  # models/<model id>/artifacts
                client.delete_logged_model(model.model_id)
        with contextlib.suppress(Exception):
            for version in client.search_model_versions(f"run_id = '{run_id}'"):
                client.delete_model_version(version.name, version.version)
        with contextlib.suppress(Exception):
            if champion is not None:
                client.set_registered_model_alias(MODEL_NAME, MODEL_ALIAS, champion)
        with contextlib.suppress(Exception):
            if run.info.status == "RUNNING":
                client.set_terminated(run_id, "FAILED")
        log.info(f"removed the artifacts and model version of the failed MLflow run {run_id}")


def _remove_local_artifacts(artifact_uri: str) -> None:
    """Remove the folder holding a local `.../<id>/artifacts` folder."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme in ("", "file") and parsed.path.rstrip("/").endswith("/artifacts"):
        shutil.rmtree(Path(unquote(parsed.path)).parent, ignore_errors=True)
