"""The small JSON file by which `raw_zip` tells the loaders where the unpacked dataset is."""

from __future__ import annotations

import json
from pathlib import Path

from etf_assets.ingest.sources import FetchedDataset


class MissingDatasetError(RuntimeError):
    """`raw_zip` has not been materialized in this data folder."""


def write_manifest(path: Path, fetched: FetchedDataset) -> None:
    record = {
        "kind": fetched.kind,
        "origin": fetched.origin,
        "root": str(fetched.root.resolve()),
        "archive": str(fetched.archive.resolve()) if fetched.archive else None,
    }
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=2))
    partial.replace(path)


def dataset_root(path: Path) -> Path:
    """The unpacked dataset of the last successful `raw_zip`; a clear failure when there is none."""
    if not path.is_file():
        raise MissingDatasetError(f"No dataset yet: materialize raw_zip first ({path} is missing).")
    return Path(json.loads(path.read_text())["root"])
