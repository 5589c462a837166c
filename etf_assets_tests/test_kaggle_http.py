"""raw_zip's Kaggle source over real HTTPS: the real `kaggle` client, its `requests` session, its
redirect to storage and its resume, against the stand-in on 127.0.0.1 (`kaggle_standin.py`).
Nothing here reaches the network: the stand-in is the only proxy and forwards nothing."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from etf_assets.constants import ARCHIVE_NAME, KAGGLE_DATASET
from etf_assets.ingest.sources import (
    KAGGLE_PARTIAL_DIR,
    KaggleError,
    fetch_dataset,
    resolve_kind,
)
from etf_assets_tests.kaggle_standin import API_HOST, STORAGE_HOST, KaggleStandin

USER = "ci-user"
KEY = "kaggle-test-key-7f3a9c"  # what the stand-in accepts; searched for in every output
WRONG_KEY = "kaggle-wrong-key-51e0d2"
# The client writes the body in chunks of 1 MiB: an archive cut off halfway must be larger than
# two chunks for the resume to start after bytes already on disk.
CLIENT_CHUNK = 1024 * 1024


def stored_zip(folder: Path) -> bytes:
    """The folder as a zip without compression (the excerpt then weighs about 2.8 MB), built with
    the standard library only."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archive(excerpt_dir: Path) -> bytes:
    data = stored_zip(excerpt_dir)
    assert len(data) > 2 * CLIENT_CHUNK
    return data


@pytest.fixture
def kaggle(
    archive: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., KaggleStandin]]:
    """Start the stand-in and point the environment at it: the proxy, its CA, Kaggle credentials
    in KAGGLE_USERNAME / KAGGLE_KEY, and a HOME without ~/.kaggle or ~/.netrc."""
    started: list[KaggleStandin] = []

    def start(
        key: str = KEY, cut_downloads: int = 0, storage_status: int | None = None
    ) -> KaggleStandin:
        standin = KaggleStandin(
            tmp_path / "standin", KAGGLE_DATASET, archive, USER, KEY, cut_downloads, storage_status
        ).__enter__()
        started.append(standin)
        for name, value in standin.client_env().items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "home" / ".kaggle"))
        monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
        monkeypatch.setenv("KAGGLE_USERNAME", USER)
        monkeypatch.setenv("KAGGLE_KEY", key)
        return standin

    yield start
    for standin in started:
        standin.__exit__(None, None, None)


def downloads_in(raw: Path) -> list[str]:
    """What a download can leave under raw/: zips (outside the unpacked dataset) and anything the
    Kaggle client or the partial folder names; other files there (the manifest, locks of the
    unpacked folder) are not the download's."""
    return sorted(
        p.relative_to(raw).as_posix()
        for p in raw.rglob("*")
        if not p.relative_to(raw).parts[0].startswith(("unpacked", ".unpacked"))
        and (p.suffix == ".zip" or "kaggle" in p.name)
    )


def failure_message(result) -> str:
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return str(event.event_specific_data.error)


def everything_written(pipeline, result, caplog, capfd) -> str:
    """Every event, log line and byte of output of a run, to search for secrets."""
    captured = capfd.readouterr()
    logs = pipeline.instance.all_logs(result.run_id)
    return "\n".join([str(result.all_events), str(logs), caplog.text, captured.out, captured.err])


def test_download_through_raw_zip_authenticates_follows_the_redirect_and_loads(
    kaggle, archive: bytes, pipeline_factory, caplog, capfd
) -> None:
    caplog.set_level(logging.DEBUG)
    standin = kaggle()
    assert resolve_kind("auto") == "kaggle"  # credentials in the environment
    pipeline = pipeline_factory("kaggle")
    result = pipeline.ingest()

    assert result.success
    [api_call] = standin.requests_to(API_HOST)
    assert (api_call.method, api_call.user, api_call.key_matched) == ("POST", USER, True)
    assert api_call.status == 302
    [download] = standin.requests_to(STORAGE_HOST)
    assert (download.method, download.status, download.cut) == ("GET", 200, False)
    assert not download.authorization, "the Kaggle key must not travel to the storage host"

    raw = pipeline.settings.raw_dir
    assert (raw / ARCHIVE_NAME).read_bytes() == archive
    assert downloads_in(raw) == [ARCHIVE_NAME]
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path == ["raw_zip"]
    ]
    assert event.materialization.metadata["source"].value == "kaggle"
    assert event.materialization.metadata["archive_bytes"].value == len(archive)
    assert pipeline.query("SELECT count(DISTINCT symbol) FROM price_volume_table") == [(5,)]
    assert KEY not in everything_written(pipeline, result, caplog, capfd)


def test_wrong_credentials_fail_raw_zip_with_a_clear_error_and_no_key(
    kaggle, pipeline_factory, caplog, capfd
) -> None:
    caplog.set_level(logging.DEBUG)
    standin = kaggle(key=WRONG_KEY)
    pipeline = pipeline_factory("kaggle")
    result = pipeline.materialize(["raw_zip"], raise_on_error=False)

    assert not result.success
    message = failure_message(result)
    assert f"Kaggle rejected the credentials of user '{USER}' (HTTP 401)" in message
    assert "KAGGLE_KEY" in message  # names what to fix
    [api_call] = standin.requests_to(API_HOST)
    assert (api_call.user, api_call.key_matched, api_call.status) == (USER, False, 401)
    assert standin.requests_to(STORAGE_HOST) == []
    assert downloads_in(pipeline.settings.raw_dir) == []
    written = everything_written(pipeline, result, caplog, capfd)
    assert WRONG_KEY not in written and KEY not in written


def test_a_refused_storage_link_is_not_blamed_on_the_credentials(kaggle, pipeline_factory) -> None:
    standin = kaggle(storage_status=403)  # the signed URL Kaggle redirected to has expired
    pipeline = pipeline_factory("kaggle")
    result = pipeline.materialize(["raw_zip"], raise_on_error=False)

    assert not result.success
    message = failure_message(result)
    assert f"refused by the storage server {STORAGE_HOST} (HTTP 403)" in message
    assert "credentials" not in message
    assert "X-Goog-Signature" not in message  # a signed URL is a credential while it is valid
    assert [s.status for s in standin.seen] == [302, 403]
    assert downloads_in(pipeline.settings.raw_dir) == []


def test_a_download_cut_off_once_is_resumed_where_it_stopped(
    kaggle, archive: bytes, pipeline_factory
) -> None:
    standin = kaggle(cut_downloads=1)
    pipeline = pipeline_factory("kaggle")
    result = pipeline.materialize(["raw_zip"])

    assert result.success
    first, resumed = standin.requests_to(STORAGE_HOST)
    assert (first.status, first.cut) == (200, True)
    # The client kept the whole chunks it had written and asked for the rest.
    assert resumed.range == f"bytes={CLIENT_CHUNK}-"
    assert (resumed.status, resumed.cut) == (206, False)
    raw = pipeline.settings.raw_dir
    assert (raw / ARCHIVE_NAME).read_bytes() == archive
    assert downloads_in(raw) == [ARCHIVE_NAME]


def test_a_download_cut_off_for_good_fails_and_leaves_the_last_archive_alone(
    kaggle, archive: bytes, pipeline_factory
) -> None:
    standin = kaggle()
    pipeline = pipeline_factory("kaggle")
    assert pipeline.materialize(["raw_zip"]).success
    raw = pipeline.settings.raw_dir
    before = {p.relative_to(raw): p.read_bytes() for p in raw.rglob("*") if p.is_file()}

    standin.cut_downloads = 10  # every attempt breaks off
    # One resumed attempt, so that the test waits for one backoff of the client, not five.
    with pytest.raises(KaggleError) as error:
        fetch_dataset("kaggle", raw, kaggle_retries=1)

    message = str(error.value)
    assert f"Kaggle download of {KAGGLE_DATASET} broke off" in message
    assert "IncompleteRead" in message and "1 attempt to resume it broke off too" in message
    downloads = standin.requests_to(STORAGE_HOST)[1:]
    assert [d.cut for d in downloads] == [True, True]
    assert downloads[1].range == f"bytes={CLIENT_CHUNK}-"
    after = {p.relative_to(raw): p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    assert after == before  # no partial archive used, none left behind
    assert downloads_in(raw) == [ARCHIVE_NAME]
    assert not (raw / KAGGLE_PARTIAL_DIR).exists()


def test_the_standin_forwards_nothing(kaggle) -> None:
    """The safety net of every test above: a host other than Kaggle's is refused, in the clear
    and through a tunnel, so nothing can leave the machine through the stand-in."""
    import requests

    kaggle()
    for url in ("http://example.com/", "https://example.com/"):
        with pytest.raises(requests.RequestException) as refused:
            response = requests.get(url, timeout=10)
            response.raise_for_status()
        assert "403" in str(refused.value) or "502" in str(refused.value)
