"""Unpacking the archive: the files written are the bytes the standard library's zipfile reads,
and a member whose data is damaged fails the unpack, naming it, with the old files kept."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from etf_assets.ingest.archive import ArchiveError, safe_extract

MEMBERS = {
    # Over a megabyte that deflates to a few kilobytes.
    "stocks/BIG.csv": b"Date,Open,High,Low,Close,Adj Close,Volume\n"
    + b"2020-01-02,1.0,2.0,0.5,1.5,1.5,100\n" * 60_000,
    "etfs/SMALL.csv": b"Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,1,1,1,1,1,1\n",
    "etfs/EMPTY.csv": b"",
    "symbols_valid_meta.csv": b"Symbol,Security Name\nBIG,Big Inc.\n",
}


def write_archive(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("stocks/", b"")
        for name, data in MEMBERS.items():
            stored = name == "etfs/SMALL.csv"
            zf.writestr(name, data, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return path


def test_unpacked_files_are_what_zipfile_reads(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "dataset.zip")
    safe_extract(archive, tmp_path / "unpacked")
    with zipfile.ZipFile(archive) as zf:
        expected = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    written = {
        p.relative_to(tmp_path / "unpacked").as_posix(): p.read_bytes()
        for p in (tmp_path / "unpacked").rglob("*")
        if p.is_file()
    }
    assert written == expected


@pytest.mark.parametrize("damage", ["one byte inside the stream", "the stream's first bytes"])
def test_a_damaged_member_fails_naming_it_and_keeps_the_old_files(
    tmp_path: Path, damage: str
) -> None:
    good = write_archive(tmp_path / "good.zip")
    target = tmp_path / "unpacked"
    safe_extract(good, target)
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("stocks/BIG.csv")
    data = bytearray(good.read_bytes())
    header_end = info.header_offset + 30 + len(info.filename) + len(info.extra)
    if damage == "one byte inside the stream":  # the data inflates, to other bytes
        data[header_end + info.compress_size // 2] ^= 0xFF
    else:  # no valid deflate block at all
        data[header_end : header_end + 16] = b"\xff" * 16
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))

    with pytest.raises(ArchiveError, match=r"damaged\.zip is corrupt.*stocks/BIG\.csv"):
        safe_extract(damaged, target)
    assert (target / "stocks/BIG.csv").read_bytes() == MEMBERS["stocks/BIG.csv"]
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert left == ["damaged.zip", "good.zip", "unpacked"]  # nothing half-unpacked


def test_a_member_larger_than_its_directory_says_fails_and_leaves_nothing(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "understated.zip")
    data = bytearray(archive.read_bytes())
    name = b"stocks/BIG.csv"
    header = data.rfind(name) - 46  # the central directory's entry comes after the data
    assert data[header : header + 4] == b"PK\x01\x02"
    declared = len(MEMBERS["stocks/BIG.csv"]) - 1000
    data[header + 24 : header + 28] = declared.to_bytes(4, "little")  # uncompressed size
    archive.write_bytes(bytes(data))
    target = tmp_path / "unpacked"

    with pytest.raises(ArchiveError, match=r"understated\.zip is corrupt.*stocks/BIG\.csv"):
        safe_extract(archive, target)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [
        "understated.zip"
    ]
