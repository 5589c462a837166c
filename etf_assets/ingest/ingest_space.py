"""The disk space an ingest run needs, known before `raw_zip` writes anything.

`raw_zip` checks the whole ingest (unpacking, then loading the table and stage 1), not just the
unpacking: an archive that unpacks but cannot be loaded would otherwise leave its unpacked files
on a full disk, and the run's failure later.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import duckdb

from etf_assets.constants import ARCHIVE_NAME, PRICE_DIRS
from etf_assets.ingest.archive import ArchiveError, check_archive, folder_bytes, unpacked_bytes
from etf_assets.ingest.load_prices import load_space_needs
from etf_assets.ingest.sources import resolve_kind
from etf_assets.storage.disk_space import SpaceNeed
from etf_assets.storage.warehouse_space import reusable_bytes

# The Kaggle archive's size cannot be known before it is downloaded: the dataset as published
# (1.2 GB zipped, about 3 GB of CSV), rounded up.
KAGGLE_ZIP_BYTES = 1_300_000_000
KAGGLE_CSV_BYTES = 3_300_000_000


def _is_price_file(info: zipfile.ZipInfo) -> bool:
    parts = info.filename.replace("\\", "/").split("/")
    return len(parts) >= 2 and parts[-2] in PRICE_DIRS and parts[-1].endswith(".csv")


def _folder_csv_bytes(folder: Path) -> int:
    roots = [folder, *(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []
    return sum(
        path.stat().st_size
        for root in roots
        for price_dir in PRICE_DIRS
        for path in (root / price_dir).glob("*.csv")
    )


def _reusable_in(database: Path) -> int:
    """Free blocks of the warehouse, read without its write lock; 0 when it cannot be opened now
    (another process writes it): the estimate is then on the safe side."""
    if not database.is_file():
        return 0
    try:
        with duckdb.connect(str(database), read_only=True) as con:
            return reusable_bytes(con)
    except duckdb.Error:
        return 0


def ingest_space_phases(
    source: str, raw_dir: Path, database: Path, stage_dir: Path
) -> list[list[SpaceNeed]]:
    """What an ingest of `source` adds to the disk, as the needs of its two peaks: while the
    archive unpacks (the previous unpacked dataset is still there), and while the table and
    stage load (the previous dataset is gone, the archive copied into `raw_dir`).

    Args:
        source: `ETF_SOURCE`.
    """
    kind = resolve_kind(source)
    unpacked = raw_dir / "unpacked"
    archive_copy = copied = 0
    if kind == "folder":
        new, csv_bytes = 0, _folder_csv_bytes(Path(source))
    elif kind == "zip":
        given = Path(source)
        if not given.is_file():
            return []  # raw_zip fails naming the source
        try:
            members = check_archive(given)
        except ArchiveError:
            return []  # raw_zip fails naming what is wrong with it
        new = unpacked_bytes(members)
        csv_bytes = sum(info.file_size for info in members if _is_price_file(info))
        copy = raw_dir / ARCHIVE_NAME
        if given.resolve() != copy.resolve():
            # Counted as a copy even where it becomes a hard link: a link may be refused.
            copied = given.stat().st_size
            archive_copy = copied - (copy.stat().st_size if copy.is_file() else 0)
    elif kind == "kaggle":
        new, csv_bytes = KAGGLE_CSV_BYTES + KAGGLE_ZIP_BYTES, KAGGLE_CSV_BYTES
    else:  # the generated sample: a few MB
        return []
    old = folder_bytes(unpacked) if kind != "folder" else 0
    loads = load_space_needs(csv_bytes, database, stage_dir, _reusable_in(database))
    return [
        [
            SpaceNeed(raw_dir, new, "unpacking the archive"),
            # The copy may be written beside the old one while the archive unpacks.
            SpaceNeed(raw_dir, copied, f"the copy of the archive ({ARCHIVE_NAME})"),
        ],
        [
            SpaceNeed(raw_dir, new - old, "the unpacked archive, less the previous one"),
            SpaceNeed(raw_dir, max(archive_copy, 0), f"the copy of the archive ({ARCHIVE_NAME})"),
            *loads,
        ],
    ]
