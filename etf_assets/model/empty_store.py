"""A new sqlite MLflow store, copied from an empty one instead of built by migrations.

MLflow builds a new store's schema by running every migration since its first version: seconds
of Python and SQLite work in each training on a fresh data folder. The empty store is the same
for every store of one MLflow version but for the Default experiment's artifact location and
times, so it is built once per installed MLflow version (`make install` does it; otherwise the
first store built keeps a copy), kept beside the installed packages, and copied.

    python -m etf_assets.model.empty_store   # build the copy for the installed MLflow
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import sys
import time
import uuid
from contextlib import closing, suppress
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT_ID = 0


def default_template_dir() -> Path:
    """Beside the installed packages (the virtualenv's `share/`): a copy per installed MLflow."""
    return Path(sys.prefix) / "share" / "etf_assets"


def template_path(template_dir: Path) -> Path:
    import mlflow

    return template_dir / f"mlflow-{mlflow.__version__}-empty.db"


def build_store(database: Path, artifact_location: str, template_dir: Path | None) -> None:
    """Create the sqlite store `database` (absent or empty), its Default experiment's artifacts
    at `artifact_location`: a copy of the empty store in `template_dir` when there is one, else
    built by MLflow and kept there (None: neither read nor kept)."""
    database.parent.mkdir(parents=True, exist_ok=True)
    template = template_path(template_dir) if template_dir is not None else None
    if template is not None and _copy_template(template, database, artifact_location):
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{database}", artifact_location)
    store.engine.dispose()
    if template is not None:
        _keep_template(database, template)


def _copy_template(template: Path, database: Path, artifact_location: str) -> bool:
    """`database` as a copy of `template` with its own Default experiment; False when there is
    no usable copy (nothing is left behind then)."""
    from mlflow.utils.uri import append_to_uri_path  # as MLflow names the Default's artifacts

    default_artifacts = append_to_uri_path(artifact_location, str(DEFAULT_EXPERIMENT_ID))
    partial = database.with_name(f"{database.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        shutil.copyfile(template, partial)
        now_ms = int(time.time() * 1000)
        with closing(sqlite3.connect(partial)) as con, con:
            updated = con.execute(
                """UPDATE experiments SET artifact_location = ?, creation_time = ?,
                   last_update_time = ? WHERE experiment_id = ?""",
                (default_artifacts, now_ms, now_ms, DEFAULT_EXPERIMENT_ID),
            ).rowcount
        if updated != 1:
            raise sqlite3.DatabaseError(f"{template} has no Default experiment")
        os.replace(partial, database)
        return True
    except FileNotFoundError:
        return False
    except (OSError, sqlite3.Error) as exc:
        log.warning("not copying the empty MLflow store %s (%s); building one", template, exc)
        return False
    finally:
        with suppress(OSError):
            partial.unlink(missing_ok=True)


def _keep_template(database: Path, template: Path) -> None:
    """Keep a copy of the just-built empty store `database`; a folder that cannot be written
    only means the next new store is built again."""
    partial = template.with_name(f"{template.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(database, partial)
        os.replace(partial, template)  # another process may keep the same copy at once
    except OSError as exc:
        log.info("could not keep a copy of the empty MLflow store in %s (%s)", template, exc)
        with suppress(OSError):
            partial.unlink(missing_ok=True)


def main() -> None:
    """Build the empty store for the installed MLflow unless it is there; a folder that cannot
    be written is said, not failed: each new store is then built by MLflow."""
    template_dir = default_template_dir()
    if template_path(template_dir).is_file():
        return
    scratch = template_dir / f".build-{uuid.uuid4().hex[:8]}"
    try:
        build_store(scratch / "mlflow.db", (scratch / "mlartifacts").as_uri(), template_dir)
    except OSError as exc:
        sys.stderr.write(f"no empty MLflow store kept in {template_dir}: {exc}\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
