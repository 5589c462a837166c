"""raw_zip's sources and the safety of unpacking, with real zip files and a real instance.
The Kaggle source over HTTP is in test_kaggle_http.py."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from etf_assets.ingest.archive import ArchiveError, safe_extract
from etf_assets.ingest.sample_archive import SampleSpec, generate_zip
from etf_assets.ingest.sources import (
    KaggleError,
    download_from_kaggle,
    fetch_dataset,
    resolve_kind,
)
from etf_assets_tests.conftest import INGEST_KEYS as INGEST
from etf_assets_tests.conftest import zip_folder_plain


def failure_message(result) -> str:
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return str(event.event_specific_data.error)


def test_member_climbing_out_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("symbols_valid_meta.csv", "x")
        zf.writestr("../escaped.csv", "pwned")
    with pytest.raises(ArchiveError, match=r"'\.\./escaped\.csv'.*'\.\.'"):
        safe_extract(archive, tmp_path / "out" / "target")
    assert not (tmp_path / "out" / "escaped.csv").exists()
    assert not (tmp_path / "out" / "target").exists()


def test_absolute_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "abs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("/tmp/absolute.csv"), "pwned")
    with pytest.raises(ArchiveError, match="absolute path"):
        safe_extract(archive, tmp_path / "target")


def test_zip_bomb_is_refused_before_writing(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("stocks/ZERO.csv", "w") as member:
            chunk = b"\0" * (1 << 20)
            for _ in range(200):
                member.write(chunk)
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(ArchiveError, match="zip bomb"):
        safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_truncated_archive_fails_at_raw_zip_and_keeps_warehouse(
    excerpt_dir: Path, pipeline_factory, tmp_path: Path
) -> None:
    good = zip_folder_plain(excerpt_dir, tmp_path / "good.zip")
    pipeline = pipeline_factory(good)
    assert pipeline.ingest().success
    before = pipeline.query("SELECT count(*), sum(volume) FROM price_volume_table")

    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    pipeline.use_source(truncated)
    result = pipeline.materialize(
        ["raw_zip", "price_volume_table", "symbol_table"], raise_on_error=False
    )
    assert not result.success
    assert "truncated.zip is not a readable zip archive" in failure_message(result)
    assert pipeline.query("SELECT count(*), sum(volume) FROM price_volume_table") == before


def test_missing_meta_file_fails_at_raw_zip(excerpt_dir: Path, pipeline_factory, tmp_path) -> None:
    archive = tmp_path / "no-meta.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(excerpt_dir / "stocks" / "AACG.csv", "stocks/AACG.csv")
    result = pipeline_factory(archive).materialize(["raw_zip"], raise_on_error=False)
    assert not result.success
    assert "symbols_valid_meta.csv is missing" in failure_message(result)


def test_unknown_source_names_the_setting(pipeline_factory, tmp_path: Path) -> None:
    result = pipeline_factory(tmp_path / "nowhere.zip").materialize(
        ["raw_zip"], raise_on_error=False
    )
    assert not result.success
    assert "nowhere.zip" in failure_message(result)


def _no_kaggle_credentials(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("HOME", str(home))


def test_auto_without_credentials_uses_the_sample(
    pipeline_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_kaggle_credentials(monkeypatch, tmp_path)
    assert resolve_kind("auto") == "sample"
    pipeline = pipeline_factory("auto")
    result = pipeline.materialize(["raw_zip"])
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["source"].value == "sample"
    assert (pipeline.settings.raw_dir / "stock-market-dataset.zip").is_file()


def test_kaggle_without_credentials_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    _no_kaggle_credentials(monkeypatch, tmp_path)
    with pytest.raises(KaggleError, match="KAGGLE_USERNAME and KAGGLE_KEY"):
        download_from_kaggle("jacksoncrow/stock-market-dataset", tmp_path / "raw")
    assert capfd.readouterr().out == ""


def test_escaping_archive_fails_at_raw_zip_and_keeps_warehouse(
    excerpt_dir: Path, pipeline_factory, tmp_path: Path
) -> None:
    pipeline = pipeline_factory(excerpt_dir)
    assert pipeline.ingest().success
    before = pipeline.query("SELECT count(*), sum(volume) FROM price_volume_table")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.write(excerpt_dir / "symbols_valid_meta.csv", "symbols_valid_meta.csv")
        zf.writestr("stocks/../../../../escaped.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n")
    pipeline.use_source(evil)
    result = pipeline.materialize(INGEST, raise_on_error=False)
    assert not result.success
    assert "climbs out of the target folder" in failure_message(result)
    assert not list(tmp_path.rglob("escaped.csv"))
    assert pipeline.query("SELECT count(*), sum(volume) FROM price_volume_table") == before


def test_a_given_zip_is_linked_not_copied_and_never_written_through(tmp_path: Path) -> None:
    """On one filesystem the archive under raw/ is a hard link to the user's zip; a later source
    replaces it without touching the user's file."""
    given = tmp_path / "mine.zip"
    generate_zip(SampleSpec(stocks=3, etfs=1, rows=40, seed=5), given)
    before = given.read_bytes()
    raw_dir = tmp_path / "raw"

    fetched = fetch_dataset(str(given), raw_dir)

    assert fetched.archive == raw_dir / "stock-market-dataset.zip"
    assert fetched.archive.samefile(given)
    assert (fetched.root / "symbols_valid_meta.csv").is_file()

    fetch_dataset("sample", raw_dir, sample=SampleSpec(stocks=2, etfs=1, rows=40, seed=6))

    assert not fetched.archive.samefile(given)
    assert fetched.archive.read_bytes() != before
    assert given.read_bytes() == before
