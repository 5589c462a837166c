"""Where the app keeps the loaded model: ``app.extensions[EXTENSION_KEY]``."""

from flask import current_app

from serving.errors import APIError
from serving.model_store import LoadedModel, ModelUnavailable

EXTENSION_KEY = "etf_serving_model"


def model_state() -> LoadedModel | ModelUnavailable:
    """The model the current app loaded at creation, or why it has none."""
    return current_app.extensions[EXTENSION_KEY]


def served_model() -> LoadedModel:
    """The model the current app serves.

    Raises:
        APIError: 503 when the app started without a model.
    """
    state = current_app.extensions[EXTENSION_KEY]
    if isinstance(state, ModelUnavailable):
        raise APIError(f"no model available: {state.reason}", 503)
    return state
