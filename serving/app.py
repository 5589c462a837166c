"""The app factory: configuration, the model, error handlers and blueprints."""

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Config, Flask

from etf_assets.constants import MODEL_ALIAS, MODEL_NAME
from etf_assets.locations import tracking_uri_from_env
from serving import meta, predict, state_file
from serving.errors import register_error_handlers
from serving.model_store import EXTENSION_KEY, UPDATES_KEY, UpdateStatus, try_load_model
from serving.schema import FEATURES

#: Config keys of the app; each can be set with a ``FLASK_`` environment variable
#: (``FLASK_MODEL_URI=models:/etf_volume_model/3``) or through the test config.
DEFAULTS: dict[str, Any] = {
    # Which model to serve: a registry URI (name@alias or name/version) or any MLflow model URI.
    "MODEL_URI": f"models:/{MODEL_NAME}@{MODEL_ALIAS}",
    # None: $MLFLOW_TRACKING_URI, else sqlite:///$ETF_DATA_DIR/mlflow.db (etf_assets.locations).
    "MLFLOW_TRACKING_URI": None,
    # Most instances in one POST /predict batch.
    "MAX_INSTANCES": 10_000,
    # Largest request body in bytes (10,000 instances take about 0.7 MB of JSON).
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    # Seconds between two checks of the registry for a new version of MODEL_URI, by the model
    # watcher that `make serve` runs (serving/watcher.py).
    "MODEL_POLL_SECONDS": 5,
    # The watcher's state file, which the app then serves its model from and follows instead of
    # loading the model itself; gunicorn_conf.py sets it for the workers. None: load in-process.
    "MODEL_STATE_FILE": None,
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create the prediction app.

    Configuration is layered (:func:`configure`). Under ``make serve`` (``MODEL_STATE_FILE``
    set), the app serves the model that the model watcher loaded and swaps in each new version
    the watcher hands over, without MLflow in this process. Otherwise it loads the model here,
    once. Either way, without a model the app still starts and answers 503 on ``/predict`` and
    ``/health``.

    Args:
        config: Overrides, e.g. a test's MLflow store.
    """
    app = Flask(__name__)
    configure(app.config, config)
    # Never debug from the environment or config (FLASK_DEBUG=1 under gunicorn, say); only
    # `flask run --debug`, which sets it after the factory returns.
    app.debug = False
    app.json.sort_keys = False  # type: ignore[attr-defined]

    _log_through_gunicorn()
    if app.config["MODEL_STATE_FILE"]:
        state_file.follow(app, app.config["MODEL_STATE_FILE"])
    else:
        tracking_uri = app.config["MLFLOW_TRACKING_URI"] or tracking_uri_from_env()
        checked_at = datetime.now(UTC)
        model_uri = app.config["MODEL_URI"]
        app.extensions[EXTENSION_KEY] = try_load_model(model_uri, tracking_uri, FEATURES)
        app.extensions[UPDATES_KEY] = UpdateStatus(checked_at)

    register_error_handlers(app)
    app.register_blueprint(predict.bp)
    app.register_blueprint(meta.bp)
    return app


def configure(target: Config, config: Mapping[str, Any] | None = None) -> None:
    """Fill ``target`` with :data:`DEFAULTS`, then ``FLASK_*`` environment variables
    (``FLASK_MODEL_URI``, ``FLASK_MLFLOW_TRACKING_URI``, ``FLASK_MAX_INSTANCES``...), then
    ``config``; the app and the model watcher read their settings through it.

    Raises:
        ValueError: a limit or the poll interval is not a positive number.
    """
    target.from_mapping(DEFAULTS)
    target.from_prefixed_env()
    if config is not None:
        target.from_mapping(config)
    _check_limits(target)


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
    poll = config["MODEL_POLL_SECONDS"]
    if type(poll) not in (int, float) or not 0 < poll < float("inf"):
        raise ValueError(f"MODEL_POLL_SECONDS must be a positive number, got {poll!r}")
