"""The app factory: configuration, the model (loaded once), error handlers and blueprints."""

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from serving import meta, predict
from serving.config import DEFAULTS, FEATURES, resolve_tracking_uri
from serving.errors import register_error_handlers
from serving.extension import EXTENSION_KEY
from serving.model_store import try_load_model


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create the prediction app.

    Configuration is layered: :data:`serving.config.DEFAULTS`, then ``FLASK_*`` environment
    variables (``FLASK_MODEL_URI``, ``FLASK_MLFLOW_TRACKING_URI``, ``FLASK_MAX_INSTANCES``...),
    then ``config``. The model is loaded here, once; if it cannot be, the app still starts and
    answers 503 on ``/predict`` and ``/health``.

    Args:
        config: Overrides, e.g. a test's MLflow store.
    """
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env()
    if config is not None:
        app.config.from_mapping(config)
    # Never debug from the environment or config (FLASK_DEBUG=1 under gunicorn, say); only
    # `flask run --debug`, which sets it after the factory returns.
    app.debug = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    _check_limits(app.config)

    _log_through_gunicorn()
    tracking_uri = resolve_tracking_uri(app.config["MLFLOW_TRACKING_URI"])
    app.extensions[EXTENSION_KEY] = try_load_model(app.config["MODEL_URI"], tracking_uri, FEATURES)

    register_error_handlers(app)
    app.register_blueprint(predict.bp)
    app.register_blueprint(meta.bp)
    return app


def _log_through_gunicorn() -> None:
    """Under gunicorn, send this package's logs (which model is served) to gunicorn's log."""
    package_log = logging.getLogger("serving")
    gunicorn_log = logging.getLogger("gunicorn.error")
    if gunicorn_log.handlers and not package_log.handlers:
        package_log.handlers = list(gunicorn_log.handlers)
        package_log.setLevel(gunicorn_log.level)
        package_log.propagate = False


def _check_limits(config: Mapping[str, Any]) -> None:
    """Fail at start-up, not on a request, when a limit is not a positive integer."""
    for key in ("MAX_INSTANCES", "MAX_CONTENT_LENGTH"):
        value = config[key]
        if type(value) is not int or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
