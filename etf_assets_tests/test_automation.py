"""The archive sensor and the run chain, evaluated against a real instance with real runs of
the jobs they watch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from etf_assets.ingest.sample_archive import SampleSpec, generate_folder
from etf_assets.orchestration.automation import (
    archive_changed,
    daily_refresh,
    features_after_ingest,
    train_after_features,
)
from etf_assets.orchestration.resources import EtfSettings

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
SENSORS = (features_after_ingest, train_after_features)  # the run status sensors


def evaluate(settings: EtfSettings, cursor: str | None):
    with dg.build_sensor_context(cursor=cursor, resources={"settings": settings}) as context:
        result = archive_changed(context)
        return result, context.cursor


def test_archive_sensor_requests_a_run_only_when_the_archive_changes(
    excerpt_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "archive"
    shutil.copytree(excerpt_dir, folder)
    settings = EtfSettings(data_dir=str(tmp_path / "data"), source=str(folder))

    first, cursor = evaluate(settings, None)
    assert isinstance(first, dg.RunRequest) and first.run_key
    again, same_cursor = evaluate(settings, cursor)
    assert isinstance(again, dg.SkipReason) and same_cursor == cursor

    changed = folder / "stocks" / "AACG.csv"
    changed.write_text(changed.read_text() + "2020-04-02,1.0,1.0,1.0,1.0,1.0,100\n")
    os.utime(changed, ns=(1, 2))
    third, new_cursor = evaluate(settings, cursor)
    assert isinstance(third, dg.RunRequest) and third.run_key != first.run_key
    assert new_cursor != cursor


def test_archive_sensor_skips_sources_that_are_not_paths(tmp_path: Path) -> None:
    for source in ("sample", "kaggle", str(tmp_path / "missing.zip")):
        result, _ = evaluate(EtfSettings(data_dir=str(tmp_path), source=source), None)
        assert isinstance(result, dg.SkipReason)


def tick(
    sensor: dg.RunStatusSensorDefinition, instance: dg.DagsterInstance, cursor: str | None
) -> dg.SensorExecutionData:
    """One evaluation of a run status sensor, as the daemon makes it."""
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        return sensor.evaluate_tick(context)


def test_run_status_sensors_chain_ingest_features_and_training(
    pipeline_factory, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    generate_folder(SampleSpec(stocks=4, etfs=2, rows=60, seed=5), archive)
    pipeline = pipeline_factory(archive)
    instance, jobs = pipeline.instance, pipeline.definitions
    # Turned on before any run: each sensor starts from the end of the event log.
    started = {sensor: tick(sensor, instance, None) for sensor in SENSORS}
    assert all(not data.run_requests for data in started.values())
    cursors = {sensor: data.cursor for sensor, data in started.items()}

    ingest = jobs.resolve_job_def("ingest_job").execute_in_process(instance=instance)
    assert ingest.success
    keys = instance.get_dynamic_partitions("symbols")
    assert len(keys) > 2
    after_ingest = tick(features_after_ingest, instance, cursors[features_after_ingest])
    [request] = after_ingest.run_requests
    assert features_after_ingest.job_name == "features_job"
    assert request.run_key == f"features-after-{ingest.run_id}"
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (keys[0], keys[-1])
    assert request.tags["dagster/sensor_name"] == "features_after_ingest"
    # The run is answered once; training does not follow an ingest.
    assert not tick(features_after_ingest, instance, after_ingest.cursor).run_requests
    not_yet = tick(train_after_features, instance, cursors[train_after_features])
    assert not not_yet.run_requests

    # The requested run, as the daemon would launch it: every symbol in one run.
    features = jobs.resolve_job_def(features_after_ingest.job_name).execute_in_process(
        instance=instance, tags=request.tags
    )
    assert features.success
    assert sorted(e.partition for e in features.get_asset_materialization_events()) == sorted(keys)
    after_features = tick(train_after_features, instance, not_yet.cursor)
    [train] = after_features.run_requests
    assert train_after_features.job_name == "train_job"
    assert train.run_key == f"train-after-{features.run_id}"
    assert train.tags["dagster/sensor_name"] == "train_after_features"
    assert not tick(train_after_features, instance, after_features.cursor).run_requests
    # A features run does not start another features run.
    assert not tick(features_after_ingest, instance, after_ingest.cursor).run_requests


def test_automation_is_off_by_default() -> None:
    for sensor in (archive_changed, *SENSORS):
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED, sensor.name
    assert daily_refresh.default_status == dg.DefaultScheduleStatus.STOPPED
