"""Configuration of the serving app: defaults, limits and where the MLflow store is."""

import os
from pathlib import Path
from typing import Any

from etf_assets.constants import FEATURE_COLUMNS, MODEL_ALIAS, MODEL_NAME

#: The two inputs of the model, in the order the model was fitted on.
FEATURES: tuple[str, ...] = tuple(FEATURE_COLUMNS)

#: Largest accepted feature value: about 100,000 times the largest real daily volume.
MAX_FEATURE_VALUE = 1e15

#: Config keys of the app; each can be set with a ``FLASK_`` environment variable
#: (``FLASK_MODEL_URI=models:/etf_volume_model/3``) or through the test config.
DEFAULTS: dict[str, Any] = {
    # Which model to serve: a registry URI (name@alias or name/version) or any MLflow model URI.
    "MODEL_URI": f"models:/{MODEL_NAME}@{MODEL_ALIAS}",
    # None: $MLFLOW_TRACKING_URI, else sqlite:///$ETF_DATA_DIR/mlflow.db.
    "MLFLOW_TRACKING_URI": None,
    # Most instances in one POST /predict batch.
    "MAX_INSTANCES": 10_000,
    # Largest request body in bytes (10,000 instances take about 0.7 MB of JSON).
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
}


def resolve_tracking_uri(configured: str | None) -> str:
    """Return the MLflow tracking URI the app reads the model from.

    Args:
        configured: The app's ``MLFLOW_TRACKING_URI`` setting, if any.

    Returns:
        ``configured``, else ``$MLFLOW_TRACKING_URI``, else the project's default store
        ``sqlite:///$ETF_DATA_DIR/mlflow.db`` (``ETF_DATA_DIR`` defaults to ``./data``).
    """
    if configured:
        return configured
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env
    data_dir = Path(os.environ.get("ETF_DATA_DIR") or "data").resolve()
    return f"sqlite:///{data_dir / 'mlflow.db'}"
