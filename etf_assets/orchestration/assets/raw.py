"""Stage 0: the dataset archive."""

import dagster as dg

from etf_assets.constants import RAW_ZIP, WAREHOUSE_FILE
from etf_assets.ingest.archive import ArchiveError, count_price_files
from etf_assets.ingest.ingest_space import ingest_space_phases
from etf_assets.ingest.manifest import write_manifest
from etf_assets.ingest.sources import KaggleError, fetch_dataset
from etf_assets.ingest.symbols_meta import MetaFileError
from etf_assets.orchestration.disk_guard import failing_clearly_on_full_disk
from etf_assets.orchestration.resources import EtfSettings
from etf_assets.storage.atomic_dir import exclusive
from etf_assets.storage.disk_space import disk_full_error, require_space


@dg.asset(name=RAW_ZIP, group_name="ingest", kinds={"python", "file"})
def raw_zip(context: dg.AssetExecutionContext, settings: EtfSettings) -> dg.MaterializeResult:
    """The `jacksoncrow/stock-market-dataset` archive, unpacked and checked.

    The source is `ETF_SOURCE`: `kaggle` (needs Kaggle credentials), a path to a zip or an
    unpacked folder, `sample` (a generated, deterministic ~50-symbol archive), or `auto` (Kaggle
    when credentials exist, else the sample). A corrupt or unsafe archive, or one without a valid
    `symbols_valid_meta.csv`, fails here and changes nothing downstream; so does an archive that
    the disk has no room to unpack and load (checked before anything is written). Another run's
    `raw_zip` on the same data folder is waited for.
    """

    def waiting() -> None:
        context.log.info(f"another run is writing {settings.raw_dir}: waiting for it to finish")

    with (
        failing_clearly_on_full_disk(
            "unpacking the archive",
            [settings.raw_dir],
            "The dataset of the last successful raw_zip and every table are as they were",
        ),
        exclusive(settings.raw_dir, on_wait=waiting),
    ):
        for phase in ingest_space_phases(
            settings.source,
            settings.raw_dir,
            settings.data_path / WAREHOUSE_FILE,
            settings.prices_stage,
        ):
            require_space(phase)
        try:
            fetched = fetch_dataset(settings.source, settings.raw_dir)
        except (ArchiveError, KaggleError, MetaFileError) as exc:
            if disk_full_error(exc) is not None:  # e.g. a download that filled the disk
                raise
            raise dg.Failure(description=str(exc)) from exc
        write_manifest(settings.manifest_path, fetched)
    files = count_price_files(fetched.root)
    context.log.info(f"dataset from {fetched.kind} ({fetched.origin}): {files} price files")
    metadata = {
        "source": fetched.kind,
        "source_setting": fetched.origin,
        "dataset_dir": dg.MetadataValue.path(str(fetched.root)),
        "price_files": files,
    }
    if fetched.archive is not None:
        metadata["archive"] = dg.MetadataValue.path(str(fetched.archive))
        metadata["archive_bytes"] = fetched.archive.stat().st_size
    return dg.MaterializeResult(metadata=metadata)
