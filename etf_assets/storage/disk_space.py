"""Disk space: what a step will write, checked before it writes, and a full disk recognised when
it fails anyway.

Every estimate comes from sizes the step knows before reading any data (the zip's directory, the
sizes of the CSV files, row counts the step computes anyway), so checking costs nothing next to
the work. The factors below turn those sizes into the bytes a step adds to the disk; they were
measured on the generated sample and on a full-size archive and rounded up, because a refusal
costs the user a retry while a full disk costs a failed run.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Kept free beyond every estimate: under `make run` the Dagster instance's Postgres (16 MB WAL
# segments) and its run logs live on the same disk, and must still record the run's end.
RESERVE_BYTES = 16 * 1024**2
# An unpacked file occupies whole filesystem blocks.
FILE_BLOCK_BYTES = 4096
# `price_volume_table` in DuckDB per byte of price CSV (measured: 0.44), and Parquet stage 1
# (measured: 0.20 on the sample and on the full-size archive).
PRICES_TABLE_BYTES_PER_CSV_BYTE = 0.5
PRICES_STAGE_BYTES_PER_CSV_BYTE = 0.25
# `features_table` in DuckDB per row (measured: 54) and Parquet stage 2 per row (measured: 32).
FEATURES_TABLE_BYTES_PER_ROW = 64
FEATURES_STAGE_BYTES_PER_ROW = 40
# One MLflow run: the model, two plots and the metrics file are a few hundred KB; the store's
# database grows by a few pages.
MODEL_RUN_BYTES = 4 * 1024**2

# What the operating system, DuckDB and SQLite say when a write finds no room. DuckDB reports a
# spill that found its temp folder's disk full as running out of memory, naming the setting.
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_DISK_FULL_TEXTS = (
    "no space left on device",
    "disk quota exceeded",
    "database or disk is full",
    "max_temp_directory_size",
)
_QUOTED_PATH = re.compile(r"""["'](/[^"']+)["']""")


class NotEnoughSpaceError(RuntimeError):
    """A step would not fit on its disk; raised before it writes anything."""


@dataclass(frozen=True)
class SpaceNeed:
    """`bytes` that `what` will add under `folder` (which need not exist yet)."""

    folder: Path
    bytes: int
    what: str


def human(size: float) -> str:
    """`size` bytes as a short figure: 1.2 GiB, 340.0 MiB, 12.0 KiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def existing_folder(path: Path) -> Path:
    """`path` or its nearest ancestor that exists: where a folder yet to be made will live."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path if path.is_dir() else path.parent


def mount_point(path: Path) -> Path:
    """The root of the filesystem that holds `path` (symlinks followed)."""
    path = existing_folder(path).resolve()
    device = os.stat(path).st_dev
    while path != path.parent and os.stat(path.parent).st_dev == device:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Bytes free for this user on the filesystem that holds (or will hold) `path`."""
    return shutil.disk_usage(existing_folder(path)).free


def file_bytes_on_disk(sizes: Iterable[int]) -> int:
    """The bytes files of these sizes occupy, each rounded up to whole filesystem blocks."""
    return sum(-(-size // FILE_BLOCK_BYTES) * FILE_BLOCK_BYTES for size in sizes)


def require_space(needs: Iterable[SpaceNeed], reserve: int = RESERVE_BYTES) -> None:
    """Raise NotEnoughSpaceError unless every filesystem has room for what will be written on it
    plus `reserve` bytes.

    Needs on one filesystem (folders may be symlinks to other disks) add up; a negative need is
    space the step frees before the others are written. The message names the folder, what
    needs the space, the bytes needed and the bytes free.
    """
    by_device: dict[int, list[SpaceNeed]] = {}
    for need in needs:
        device = os.stat(existing_folder(need.folder)).st_dev
        by_device.setdefault(device, []).append(need)
    for group in by_device.values():
        needed = sum(need.bytes for need in group)
        if needed <= 0:
            continue
        folder = next(need.folder for need in group if need.bytes > 0)
        free = free_bytes(folder)
        if needed + reserve <= free:
            continue
        parts = "; ".join(
            f"{need.what}: {'-' if need.bytes < 0 else ''}{human(abs(need.bytes))} in {need.folder}"
            for need in group
            if need.bytes
        )
        raise NotEnoughSpaceError(
            f"Not enough disk space in {folder}: this step needs about {needed:,} bytes "
            f"({human(needed)}) there, and {free:,} bytes ({human(free)}) are free "
            f"(with {human(reserve)} kept free for the instance's database and logs). "
            f"Needed: {parts}. Nothing was written. Free at least "
            f"{human(needed + reserve - free)} on that disk, or set ETF_DATA_DIR to a folder on a "
            "larger one, and run again."
        )


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """`exc`, what caused it, and the driver errors that SQLAlchemy and MLflow wrap."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "orig", None)]


def disk_full_error(exc: BaseException) -> BaseException | None:
    """The error in `exc`'s chain that says a disk is full (ENOSPC from Python, DuckDB's "No
    space left on device", SQLite's "database or disk is full"), or None."""
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
            return error
        if any(text in str(error).lower() for text in _DISK_FULL_TEXTS):
            return error
    return None


def failed_path(error: BaseException) -> Path | None:
    """The file a disk-full error names, if it names one."""
    if isinstance(error, OSError) and error.filename:
        return Path(os.fsdecode(error.filename))
    match = _QUOTED_PATH.search(str(error))
    return Path(match.group(1)) if match else None


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
