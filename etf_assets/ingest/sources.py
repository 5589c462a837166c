"""Get the dataset from the configured source: Kaggle, a local zip or folder, or the sample."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from etf_assets.constants import ARCHIVE_NAME, KAGGLE_DATASET, META_FILE
from etf_assets.ingest.archive import ArchiveError, find_dataset_root, safe_extract
from etf_assets.ingest.sample_archive import SampleSpec, generate_zip
from etf_assets.ingest.symbols_meta import read_symbols_meta

log = logging.getLogger(__name__)

SOURCE_KINDS = ("auto", "kaggle", "sample")
# A 1.2 GB download that breaks off is resumed where it stopped: the `kaggle` client's own
# default, which waits about a minute in all between its attempts.
KAGGLE_DOWNLOAD_RETRIES = 5
KAGGLE_PARTIAL_DIR = ".kaggle-download"  # under raw/, removed whether the download works or not


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


def _secrets(config: dict[str, str]) -> list[str]:
    """Every credential value the `kaggle` client may hold, to be kept out of messages."""
    values = [os.environ.get("KAGGLE_KEY"), os.environ.get("KAGGLE_API_TOKEN")]
    values += [config.get("key"), config.get("token")]
    return [v for v in values if v and len(v) >= 4]


def _scrubbed(text: str, secrets: list[str]) -> str:
    """`text` without the credentials and without URL queries: Kaggle redirects downloads to a
    signed storage URL whose query is a credential for as long as it is valid."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return _URL_QUERY.sub(r"\1?<query hidden>", text)


_URL_QUERY = re.compile(r"((?:https?://|url: /)[^\s?'\"]*)\?[^\s'\"]+")


def _attempts(retries: int) -> str:
    if retries == 0:
        return "it was not resumed"
    return f"{retries} attempt{'s' if retries > 1 else ''} to resume it broke off too"


def _download_failure(dataset: str, exc: BaseException, user: str | None, retries: int) -> str:
    """What went wrong, in words, from what `requests` or the `kaggle` client raised."""
    import requests

    response = getattr(exc, "response", None)
    http_error = isinstance(exc, requests.HTTPError) and response is not None
    status = response.status_code if http_error else None  # a Response is falsy when not ok
    if status is not None:
        host = urlsplit(response.url or "").hostname or ""
        if host != "kaggle.com" and not host.endswith(".kaggle.com"):
            # Kaggle's API answered with a redirect; the storage it points to refused.
            return (
                f"Kaggle download of {dataset} was refused by the storage server {host} "
                f"(HTTP {status}); run raw_zip again for a fresh download link"
            )
        if status in (401, 403):
            who = f" of user {user!r}" if user else ""
            return (
                f"Kaggle rejected the credentials{who} (HTTP {status}): check KAGGLE_USERNAME and "
                "KAGGLE_KEY (or KAGGLE_API_TOKEN, or ~/.kaggle/kaggle.json), or choose another "
                "source with ETF_SOURCE=sample or ETF_SOURCE=/path/to/archive.zip"
            )
        if status == 404:
            return f"Kaggle has no dataset {dataset} (HTTP 404)"
        return f"Kaggle download of {dataset} failed with HTTP {status}: {exc}"
    if isinstance(exc, requests.RequestException | OSError):
        return (
            f"Kaggle download of {dataset} broke off ({type(exc).__name__}: {exc}) and "
            f"{_attempts(retries)}; nothing was kept, run raw_zip again"
        )
    if isinstance(exc, ValueError):  # the client's own check of the size it was promised
        return f"Kaggle download of {dataset} is incomplete ({exc}); nothing was kept"
    return f"Kaggle download of {dataset} failed: {type(exc).__name__}: {exc}"


def download_from_kaggle(
    dataset: str, folder: Path, retries: int = KAGGLE_DOWNLOAD_RETRIES
) -> Path:
    """Download the dataset zip into `folder` with the `kaggle` package and return its path.

    Args:
        dataset: `owner/slug`.
        folder: where the zip goes (created if missing); the caller owns what is left in it.
        retries: how many times a connection that broke off is resumed (the client's HTTP Range
            requests, with its backoff) before the download fails.

    Raises:
        KaggleError: credentials missing or rejected, no such dataset, or the download broke off
            for good. The message never contains a key or token.
    """
    # `import kaggle` authenticates and prints a help text (then SystemExit) when it cannot.
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except (SystemExit, Exception):
        raise KaggleError(
            "Kaggle credentials are missing or invalid: set KAGGLE_USERNAME and KAGGLE_KEY "
            "(or KAGGLE_API_TOKEN), or put kaggle.json in ~/.kaggle; or choose another source "
            "with ETF_SOURCE=sample or ETF_SOURCE=/path/to/archive.zip"
        ) from None  # the client's exception may quote its configuration
    from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

    config = getattr(api, "config_values", {}) or {}
    owner, _, slug = dataset.partition("/")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{slug}.zip"
    # The two calls `KaggleApi.dataset_download_files` makes, with the retry count in our hands
    # (it resumes a broken connection five times, with a backoff of about a minute in all).
    try:
        with contextlib.redirect_stdout(chatter), api.build_kaggle_client() as client:
            request = ApiDownloadDatasetRequest()
            request.owner_slug = owner
            request.dataset_slug = slug
            response = client.datasets.dataset_api_client.download_dataset(request)
            try:
                api.download_file(
                    response,
                    str(target),
                    client.http_client(),
                    quiet=True,
                    resume=False,
                    max_retries=retries,
                )
            finally:
                response.close()
    except Exception as exc:
        message = _download_failure(dataset, exc, config.get("username"), retries)
        raise KaggleError(_scrubbed(message, _secrets(config))) from None
    if not target.is_file():
        raise KaggleError(f"Kaggle download of {dataset} produced no zip file")
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


def _link_or_copy(source: Path, target: Path) -> None:
    """Make `target` a hard link to `source`, or a copy where a link cannot be made (another
    filesystem, another user's file).

    A link writes nothing: the archive under raw/ is only ever replaced by a rename (a new
    download, the sample, another copy), never written in place, so the user's file is safe.
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def fetch_dataset(
    source: str,
    raw_dir: Path,
    sample: SampleSpec | None = None,
    kaggle_retries: int = KAGGLE_DOWNLOAD_RETRIES,
) -> FetchedDataset:
    """Put the dataset where the pipeline reads it and return where that is.

    Zips (downloaded, given, or the generated sample) are unpacked to `raw_dir/unpacked`, which
    is replaced only by an archive that unpacked safely and holds a valid meta file; a folder
    source is read in place. A Kaggle download lands in `raw_dir/.kaggle-download` and becomes
    `raw_dir/stock-market-dataset.zip` only once it unpacked; whatever happens, the partial
    folder is removed, so a broken download is never used and never left behind.
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
        if given.resolve() == archive.resolve():
            safe_extract(given, unpacked, validate_dataset)
        else:
            # Copied under a temporary name first: a copy that fails (a full disk) leaves neither
            # a truncated archive nor a new unpacked folder, and the old ones stay.
            copy = raw_dir / f".{ARCHIVE_NAME}.partial"
            copy.unlink(missing_ok=True)
            try:
                _link_or_copy(given, copy)
                safe_extract(given, unpacked, validate_dataset)
            except BaseException:
                copy.unlink(missing_ok=True)
                raise
            copy.replace(archive)
        return FetchedDataset(kind, source, find_dataset_root(unpacked), archive)
    if kind == "kaggle":
        log.info("downloading %s from Kaggle", KAGGLE_DATASET)
        partial = raw_dir / KAGGLE_PARTIAL_DIR
        shutil.rmtree(partial, ignore_errors=True)
        try:
            downloaded = download_from_kaggle(KAGGLE_DATASET, partial, retries=kaggle_retries)
            safe_extract(downloaded, unpacked, validate_dataset)
            downloaded.replace(archive)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    else:
        spec = sample or SampleSpec()
        log.info("writing the bundled sample archive: %s", spec)
        generate_zip(spec, archive)
        safe_extract(archive, unpacked, validate_dataset)
    return FetchedDataset(kind, source, find_dataset_root(unpacked), archive)
