"""Unpack the dataset archive safely and find the dataset inside a folder."""

from __future__ import annotations

import logging
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from isal import isal_zlib

from etf_assets.constants import (
    MAX_ARCHIVE_MEMBERS,
    MAX_UNPACK_RATIO,
    MAX_UNPACKED_BYTES,
    META_FILE,
    PRICE_DIRS,
)
from etf_assets.storage.atomic_dir import exclusive, new_pending, publish, remove_leftovers
from etf_assets.storage.disk_space import SpaceNeed, file_bytes_on_disk, human, require_space

log = logging.getLogger(__name__)

# Tiny archives legitimately unpack to many times their size (a few header-only files).
_RATIO_ALLOWANCE_BYTES = 10 * 1024**2
_EXTRACT_THREADS = 2  # inflating releases the GIL, so two threads use both cores
_CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then the name's and extra field's lengths
_LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
_ENCRYPTED = 0x1


class ArchiveError(ValueError):
    """The archive is corrupt, unsafe, or not the stock-market dataset."""


def _unsafe_member_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in parts:
        return "climbs out of the target folder with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    return None


def check_archive(archive: Path) -> list[zipfile.ZipInfo]:
    """Return the archive's file members, or raise ArchiveError naming what is wrong."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(
            f"{archive} is not a readable zip archive (corrupt or truncated): {exc}"
        ) from exc
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        raise ArchiveError(f"{archive} has {len(infos)} members, more than {MAX_ARCHIVE_MEMBERS}")
    for info in infos:
        if reason := _unsafe_member_reason(info):
            raise ArchiveError(f"{archive}: member {info.filename!r} {reason}; refusing to extract")
    unpacked = sum(info.file_size for info in infos)
    packed = archive.stat().st_size
    if (
        unpacked > MAX_UNPACKED_BYTES
        or unpacked > MAX_UNPACK_RATIO * packed + _RATIO_ALLOWANCE_BYTES
    ):
        raise ArchiveError(
            f"{archive} would unpack to {unpacked:,} bytes from {packed:,}: "
            f"more than {MAX_UNPACK_RATIO}x its size or {MAX_UNPACKED_BYTES:,} bytes (a zip bomb?)"
        )
    return [info for info in infos if not info.is_dir()]


def _extract_members(archive: Path, members: list[zipfile.ZipInfo], target: Path) -> None:
    root = target.resolve()
    with zipfile.ZipFile(archive) as zf, open(archive, "rb") as packed:
        for info in members:
            dest = (target / info.filename.replace("\\", "/")).resolve()
            if not dest.is_relative_to(root):
                raise ArchiveError(f"{archive}: member {info.filename!r} resolves outside {target}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as dst:
                if info.compress_type == zipfile.ZIP_DEFLATED and not info.flag_bits & _ENCRYPTED:
                    _inflate(archive, packed, info, dst)
                else:
                    with zf.open(info) as src:
                        shutil.copyfileobj(src, dst, _CHUNK)


def _inflate(archive: Path, packed: BinaryIO, info: zipfile.ZipInfo, dst: BinaryIO) -> None:
    """Unpack a deflated member into `dst` with ISA-L's inflate, about twice as fast as zlib's,
    and check its size and CRC-32 against the zip's directory as zipfile does."""
    size = crc = 0
    try:
        for data in _inflated_chunks(packed, info):
            size += len(data)
            if size > info.file_size:
                break  # the directory understates it: never write more than it declares
            crc = isal_zlib.crc32(data, crc)
            dst.write(data)
    except isal_zlib.error as exc:
        raise ArchiveError(
            f"{archive} is corrupt: member {info.filename!r} is not valid deflate data ({exc})"
        ) from exc
    if size != info.file_size or crc != info.CRC:
        raise ArchiveError(
            f"{archive} is corrupt: member {info.filename!r} does not unpack to the "
            f"{info.file_size:,} bytes with CRC-32 {info.CRC:08x} that the zip's directory lists"
        )


def _inflated_chunks(packed: BinaryIO, info: zipfile.ZipInfo) -> Iterator[bytes]:
    packed.seek(info.header_offset)
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(packed.read(_LOCAL_HEADER.size))
    if signature != _LOCAL_HEADER_SIGNATURE:
        raise zipfile.BadZipFile(f"member {info.filename!r} has no local header")
    packed.seek(name_length + extra_length, 1)
    inflater = isal_zlib.decompressobj(-15)
    left = info.compress_size
    while left:
        chunk = packed.read(min(left, _CHUNK))
        if not chunk:
            raise EOFError(f"member {info.filename!r} ends early")
        left -= len(chunk)
        while chunk:
            yield inflater.decompress(chunk, _CHUNK)
            chunk = inflater.unconsumed_tail
    yield inflater.flush()


def unpacked_bytes(members: list[zipfile.ZipInfo]) -> int:
    """What the members take on disk once unpacked, from the zip's directory alone."""
    return file_bytes_on_disk(info.file_size for info in members)


def folder_bytes(folder: Path) -> int:
    """What the files under `folder` take on disk (0 when it does not exist)."""
    if not folder.is_dir():
        return 0
    return file_bytes_on_disk(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def safe_extract(
    archive: Path, target: Path, validate: Callable[[Path], object] | None = None
) -> None:
    """Unpack `archive` into `target`, replacing it only once everything unpacked cleanly and
    `validate(unpacked folder)` raised nothing.

    Refuses before writing when the disk lacks room for the unpacked files (the old `target` is
    removed only after the swap). Whatever fails, what was unpacked is removed; so is what runs
    killed half-way left.
    """
    members = check_archive(archive)
    with exclusive(target):
        remove_leftovers(target)
        needed = unpacked_bytes(members)
        require_space([SpaceNeed(target.parent, needed, f"unpacking {archive.name}")])
        log.info(
            "unpacking %d files (%s) of %s into %s", len(members), human(needed), archive, target
        )
        pending = new_pending(target)
        try:
            chunks = [members[i::_EXTRACT_THREADS] for i in range(_EXTRACT_THREADS)]
            with ThreadPoolExecutor(_EXTRACT_THREADS) as pool:
                for done in [
                    pool.submit(_extract_members, archive, chunk, pending) for chunk in chunks
                ]:
                    done.result()
            if validate is not None:
                validate(pending)
        except (zipfile.BadZipFile, zlib.error, struct.error, EOFError) as exc:
            shutil.rmtree(pending, ignore_errors=True)
            raise ArchiveError(f"{archive} is corrupt: {exc}") from exc
        except BaseException:
            shutil.rmtree(pending, ignore_errors=True)
            raise
        publish(pending, target)


def find_dataset_root(folder: Path) -> Path:
    """The folder holding `symbols_valid_meta.csv`: `folder` itself or one level below it."""
    candidates = (
        [folder, *sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []
    )
    for candidate in candidates:
        if (candidate / META_FILE).is_file():
            return candidate
    raise ArchiveError(
        f"{META_FILE} is missing: not found in {folder} or the folders directly under it"
    )


def count_price_files(root: Path) -> int:
    return sum(1 for folder in PRICE_DIRS for _ in (root / folder).glob("*.csv"))
