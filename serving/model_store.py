"""The served model: loading it from the MLflow registry, and what the endpoints read of it.

The app keeps the model it serves in ``app.extensions[EXTENSION_KEY]`` and how its updates go in
``app.extensions[UPDATES_KEY]``; the endpoints read them with :func:`model_state`,
:func:`served_model` and :func:`update_status`. A request reads the model once, so that a model
swapped in meanwhile (:mod:`serving.state_file`) never mixes two versions in one answer.

MLflow (and scikit-learn, through the model) is imported only by the functions that load a
model: under ``make serve`` they run in the model watcher (:mod:`serving.watcher`), never in a
worker.
"""

import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flask import current_app

from serving.errors import APIError
from serving.predictor import Predictor, make_predictor

log = logging.getLogger(__name__)

EXTENSION_KEY = "etf_serving_model"
UPDATES_KEY = "etf_serving_updates"

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


@dataclass(frozen=True)
class LoadedModel:
    """The model being served and where it came from (reported by ``GET /health``)."""

    uri: str
    name: str | None
    version: str | None
    run_id: str | None
    loaded_at: datetime
    predictor: Predictor


@dataclass(frozen=True)
class ModelUnavailable:
    """Why no model is served; ``reason`` is safe to show to clients."""

    uri: str
    reason: str


@dataclass(frozen=True)
class UpdateStatus:
    """When the registry was last checked for a new version, and what went wrong if anything.

    ``poll_seconds`` is None when the app loaded its model itself and does not look for updates
    (the test client, ``flask run``); then ``checked_at`` is when it loaded it.
    """

    checked_at: datetime
    error: str | None = None
    poll_seconds: float | None = None


def model_state() -> LoadedModel | ModelUnavailable:
    """The model the current app serves, or why it has none."""
    return current_app.extensions[EXTENSION_KEY]


def update_status() -> UpdateStatus:
    """How the current app's model updates go."""
    return current_app.extensions[UPDATES_KEY]


def served_model() -> LoadedModel:
    """The model the current app serves.

    Raises:
        APIError: 503 when the app has no model.
    """
    state = current_app.extensions[EXTENSION_KEY]
    if isinstance(state, ModelUnavailable):
        raise APIError(f"no model available: {state.reason}", 503)
    return state


class NoServableModel(Exception):
    """No servable model at the configured place; the message is safe to show to clients."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model URI points now: for a registry URI, the version an alias names."""

    uri: str
    name: str | None
    version: str | None
    run_id: str | None
    source: str

    @property
    def identity(self) -> tuple[str | None, str | None]:
        """What tells one registered version from another (None, None outside the registry)."""
        return self.version, self.run_id


def resolve_model(
    model_uri: str, tracking_uri: str, make_client: Callable[[], Any] | None = None
) -> ResolvedModel:
    """Resolve ``model_uri`` in the MLflow store at ``tracking_uri``: cheap, nothing downloaded.

    Args:
        make_client: Returns the ``MlflowClient`` on ``tracking_uri`` to use, called once the
            store is known to exist (a poll reuses one client); None: a new client.

    Raises:
        NoServableModel: the store, the registered model, the alias or the version is missing.
        Exception: anything else MLflow raises.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    _require_store(tracking_uri)
    match = _REGISTRY_URI.match(model_uri)
    if not match:
        return ResolvedModel(model_uri, None, None, None, model_uri)
    client = make_client() if make_client else MlflowClient(tracking_uri=tracking_uri)
    name = match["name"]
    try:
        if match["alias"]:
            model_version = client.get_model_version_by_alias(name, match["alias"])
        else:
            model_version = client.get_model_version(name, match["version"])
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise NoServableModel(
                f"{model_uri} is not in the MLflow model registry; train and register a "
                "model first (make run)"
            ) from exc
        raise
    version = str(model_version.version)
    source = client.get_model_version_download_uri(name, version)
    return ResolvedModel(model_uri, name, version, model_version.run_id, source)


def load_resolved(
    resolved: ResolvedModel, tracking_uri: str, features: tuple[str, ...]
) -> LoadedModel:
    """Download and load the model ``resolved`` names; derive its predictor.

    Raises:
        NoServableModel: the model does not take ``features``.
        Exception: anything MLflow or the model loader raises (artifacts missing, say).
    """
    import mlflow.artifacts
    import mlflow.sklearn

    # Into a folder of our own, removed once loaded: a long-running watcher loads every version.
    with tempfile.TemporaryDirectory(prefix="etf-serving-model-") as download_dir:
        local_path = mlflow.artifacts.download_artifacts(
            artifact_uri=resolved.source, tracking_uri=tracking_uri, dst_path=download_dir
        )
        model = mlflow.sklearn.load_model(local_path)
    _check_features(model, features, resolved.uri)
    return LoadedModel(
        uri=resolved.uri,
        name=resolved.name,
        version=resolved.version,
        run_id=resolved.run_id,
        loaded_at=datetime.now(UTC),
        predictor=make_predictor(model, features),
    )


def load_model(model_uri: str, tracking_uri: str, features: tuple[str, ...]) -> LoadedModel:
    """Load ``model_uri`` from the MLflow store at ``tracking_uri``.

    A registry alias is resolved to its version first, so that the version reported is the
    version served even if the alias moves meanwhile.

    Raises:
        NoServableModel: the store, the registered model, the alias or the version is missing, or
            the model does not take ``features``.
        Exception: anything else MLflow or the model loader raises.
    """
    return load_resolved(resolve_model(model_uri, tracking_uri), tracking_uri, features)


def try_load_model(
    model_uri: str, tracking_uri: str, features: tuple[str, ...]
) -> LoadedModel | ModelUnavailable:
    """:func:`load_model`, turning any failure into a :class:`ModelUnavailable` (and a log)."""
    try:
        loaded = load_model(model_uri, tracking_uri, features)
    except NoServableModel as exc:
        log.warning("No model served: %s", exc)
        return ModelUnavailable(model_uri, str(exc))
    except Exception:
        log.exception("No model served: loading %s from %s failed", model_uri, tracking_uri)
        return ModelUnavailable(model_uri, f"{model_uri} could not be loaded (see the server log)")
    log.info(
        "Serving %s (version %s, run %s) with the %s predictor",
        model_uri,
        loaded.version,
        loaded.run_id,
        loaded.predictor.kind,
    )
    return loaded


def _require_store(tracking_uri: str) -> None:
    """Refuse a SQLite store that does not exist (MLflow would create an empty one)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return
    path = unquote(tracking_uri[len(prefix) :].split("?", 1)[0])
    if path and path != ":memory:" and not Path(path).is_file():
        raise NoServableModel("the MLflow store does not exist yet; train a model first (make run)")


def _check_features(model: Any, features: tuple[str, ...], model_uri: str) -> None:
    """Refuse a model fitted on other columns than the API's inputs, in the API's order."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None and tuple(names) != features:
        raise NoServableModel(f"{model_uri} takes the features {list(names)}, not {list(features)}")
    count = getattr(model, "n_features_in_", len(features))
    if count != len(features):
        raise NoServableModel(f"{model_uri} takes {count} features, not {len(features)}")
