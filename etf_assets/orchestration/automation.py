"""Automation, all off by default (turn it on in the UI's Automation tab):

- `daily_refresh`: every day at 06:00 UTC, runs `ingest_job`;
- `archive_changed`: when the archive at `ETF_SOURCE` (a zip or a folder) is new or changed,
  runs `ingest_job`;
- `features_after_ingest`: after a successful `ingest_job`, runs `features_job` over every symbol
  in one run; symbols whose prices did not change are not recomputed (content hash per symbol);
- `train_after_features`: after a successful `features_job`, runs `train_job`.
"""

import hashlib
from pathlib import Path

import dagster as dg

from etf_assets.constants import META_FILE, PRICE_DIRS
from etf_assets.orchestration.jobs import features_job, ingest_job, train_job
from etf_assets.orchestration.partition_range import range_tags
from etf_assets.orchestration.resources import EtfSettings

daily_refresh = dg.ScheduleDefinition(
    name="daily_refresh",
    job=ingest_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Reload the archive every morning; the sensors then refresh features and model.",
)


def archive_fingerprint(source: Path) -> str:
    """Size and modification time of the archive, or of every file of an unpacked folder."""
    if source.is_file():
        entries = [source]
    else:
        entries = [source / META_FILE, *(p for d in PRICE_DIRS for p in (source / d).glob("*.csv"))]
    digest = hashlib.sha256()
    for path in sorted(p for p in entries if p.is_file()):
        stat = path.stat()
        digest.update(
            f"{path.relative_to(source) if path != source else path.name}"
            f"|{stat.st_size}|{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()[:16]


@dg.sensor(
    name="archive_changed",
    job=ingest_job,
    minimum_interval_seconds=60,
    description="Every minute, runs ingest_job when the zip or folder that ETF_SOURCE names is new "
    "or changed (the size and modification time of every file); skips the Kaggle and sample "
    "sources.",
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def archive_changed(context: dg.SensorEvaluationContext, settings: EtfSettings):
    source = Path(settings.source)
    if settings.source in ("auto", "kaggle", "sample") or not source.exists():
        return dg.SkipReason(f"ETF_SOURCE={settings.source!r} is not an existing archive or folder")
    fingerprint = archive_fingerprint(source)
    if fingerprint == context.cursor:
        return dg.SkipReason(f"{source} has not changed")
    context.update_cursor(fingerprint)
    return dg.RunRequest(run_key=f"archive-{fingerprint}", tags={"etf/archive": fingerprint})


@dg.run_status_sensor(
    name="features_after_ingest",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[ingest_job],
    request_job=features_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="After a successful ingest_job, runs features_job over every symbol partition, "
    "in one run.",
)
def features_after_ingest(context: dg.RunStatusSensorContext):
    return dg.RunRequest(
        run_key=f"features-after-{context.dagster_run.run_id}",
        tags=range_tags(context.instance),
    )


@dg.run_status_sensor(
    name="train_after_features",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[features_job],
    request_job=train_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="After a successful features_job, runs train_job: poly_model is retrained on "
    "the refreshed features.",
)
def train_after_features(context: dg.RunStatusSensorContext):
    return dg.RunRequest(run_key=f"train-after-{context.dagster_run.run_id}")


SCHEDULES = [daily_refresh]
SENSORS = [archive_changed, features_after_ingest, train_after_features]
