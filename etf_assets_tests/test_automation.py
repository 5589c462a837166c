"""The archive sensor and the run chain, evaluated against a real instance."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from etf_assets.orchestration.automation import (
    archive_changed,
    daily_refresh,
    features_after_ingest,
)
from etf_assets.orchestration.partition_range import range_tags
from etf_assets.orchestration.resources import EtfSettings


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

    changed = folder / "stocks" / "A.csv"
    changed.write_text(changed.read_text() + "2020-04-02,1.0,1.0,1.0,1.0,1.0,100\n")
    os.utime(changed, ns=(1, 2))
    third, new_cursor = evaluate(settings, cursor)
    assert isinstance(third, dg.RunRequest) and third.run_key != first.run_key
    assert new_cursor != cursor


def test_archive_sensor_skips_sources_that_are_not_paths(tmp_path: Path) -> None:
    for source in ("sample", "kaggle", str(tmp_path / "missing.zip")):
        result, _ = evaluate(EtfSettings(data_dir=str(tmp_path), source=source), None)
        assert isinstance(result, dg.SkipReason)


def test_features_after_ingest_asks_for_every_registered_symbol() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("symbols", ["AA", "NA", "LGF.B"])
        assert range_tags(instance) == {
            "dagster/asset_partition_range_start": "AA",
            "dagster/asset_partition_range_end": "LGF.B",
        }
    assert features_after_ingest.default_status == dg.DefaultSensorStatus.STOPPED
    assert daily_refresh.default_status == dg.DefaultScheduleStatus.STOPPED
