"""Get the dataset from the configured source: Kaggle, a local zip or folder, or the sample."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from etf_assets.constants import ARCHIVE_NAME, KAGGLE_DATASET, META_FILE
from etf_assets.ingest.archive import ArchiveError, find_dataset_root, safe_extract
from etf_assets.ingest.sample_archive import SampleSpec, generate_zip
from etf_assets.ingest.symbols_meta import read_symbols_meta

log = logging.getLogger(__name__)

SOURCE_KINDS = ("auto", "kaggle", "sample")


class KaggleError(RuntimeError):
    """Kaggle credentials are missing or invalid, or the download failed."""


@dataclass(frozen=True)
class FetchedDataset:
    kind: str  # "kaggle", "zip", "folder" or "sample"
    origin: str  # what the source setting named, for the asset's metadata
    root: Path  # the folder holding symbols_valid_meta.csv, stocks/ and etfs/
    archive: Path | None  # the zip under raw/, when there is one


def kaggle_credentials_present() -> bool:
    """True when the `kaggle` package would find credentials (checked without importing it)."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    config_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return (config_dir / "kaggle.json").is_file() or (config_dir / "access_token").is_file()


def download_from_kaggle(dataset: str, raw_dir: Path) -> Path:
    """Download the dataset zip into `raw_dir` with the `kaggle` package and return its path."""
    # `import kaggle` authenticates and prints a help text (then SystemExit) when it cannot.
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except (SystemExit, Exception) as exc:
        raise KaggleError(
            "Kaggle credentials are missing or invalid: set KAGGLE_USERNAME and KAGGLE_KEY "
            "(or KAGGLE_API_TOKEN), or put kaggle.json in ~/.kaggle; or choose another source "
            "with ETF_SOURCE=sample or ETF_SOURCE=/path/to/archive.zip"
        ) from exc
    partial = raw_dir / ".kaggle-download"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with contextlib.redirect_stdout(chatter):
            api.dataset_download_files(dataset, path=str(partial), quiet=True, force=True)
    except (SystemExit, Exception) as exc:
        raise KaggleError(f"Kaggle download of {dataset} failed: {exc}") from exc
    downloaded = sorted(partial.glob("*.zip"))
    if not downloaded:
        raise KaggleError(f"Kaggle download of {dataset} produced no zip file")
    target = raw_dir / ARCHIVE_NAME
    downloaded[0].replace(target)
    shutil.rmtree(partial, ignore_errors=True)
    return target


def resolve_kind(source: str) -> str:
    """What `source` means: auto becomes kaggle or sample; anything else is a path."""
    if source == "auto":
        return "kaggle" if kaggle_credentials_present() else "sample"
    if source in SOURCE_KINDS:
        return source
    return "folder" if Path(source).is_dir() else "zip"


def validate_dataset(folder: Path) -> Path:
    """The dataset root inside `folder`, once its meta file proves it is the dataset."""
    root = find_dataset_root(folder)
    read_symbols_meta(root / META_FILE)
    return root


def fetch_dataset(source: str, raw_dir: Path, sample: SampleSpec | None = None) -> FetchedDataset:
    """Put the dataset where the pipeline reads it and return where that is.

    Zips (downloaded, given, or the generated sample) are unpacked to `raw_dir/unpacked`, which
    is replaced only by an archive that unpacked safely and holds a valid meta file; a folder
    source is read in place.
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    kind = resolve_kind(source)
    archive = raw_dir / ARCHIVE_NAME
    unpacked = raw_dir / "unpacked"
    if kind == "folder":
        return FetchedDataset(kind, source, validate_dataset(Path(source)), None)
    if kind == "zip":
        given = Path(source)
        if not given.is_file():
            raise ArchiveError(
                f"ETF_SOURCE={source!r} is neither an existing file or folder "
                f"nor one of {', '.join(SOURCE_KINDS)}"
            )
        safe_extract(given, unpacked, validate_dataset)
        if given.resolve() != archive.resolve():
            shutil.copyfile(given, archive)
        return FetchedDataset(kind, source, find_dataset_root(unpacked), archive)
    if kind == "kaggle":
        log.info("downloading %s from Kaggle", KAGGLE_DATASET)
        download_from_kaggle(KAGGLE_DATASET, raw_dir)
    else:
        spec = sample or SampleSpec()
        log.info("writing the bundled sample archive: %s", spec)
        generate_zip(spec, archive)
    safe_extract(archive, unpacked, validate_dataset)
    return FetchedDataset(kind, source, find_dataset_root(unpacked), archive)
