"""Where a deployment keeps its data and its MLflow store: the defaults, stated once.

Free of Dagster, so that the code location, the serving app and the Makefile
(`python -m etf_assets.locations` prints the MLflow store) all read the same rules.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

DATA_DIR_ENV = "ETF_DATA_DIR"
DEFAULT_DATA_DIR = "data"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def data_dir_from_env() -> Path:
    """`$ETF_DATA_DIR`, else `./data`, as an absolute path."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).resolve()


def tracking_uri_for(data_dir: Path) -> str:
    """The project's own MLflow store: a sqlite database in the data folder."""
    return f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"


def tracking_uri_from_env() -> str:
    """`$MLFLOW_TRACKING_URI`, else the store in the data folder."""
    return os.environ.get(TRACKING_URI_ENV) or tracking_uri_for(data_dir_from_env())


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's module-level API (runs, log_model) at `uri` for the block only.

    `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI; left set, it would redirect the
    next training in the same process (tests, in-process runs) and every later child process.
    Since setting the URI always sets the variable, restoring the variable restores the URI.
    """
    import mlflow

    before = os.environ.get(TRACKING_URI_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # unsets the module global and the variable
        if before is not None:
            os.environ[TRACKING_URI_ENV] = before


if __name__ == "__main__":
    print(tracking_uri_from_env())
