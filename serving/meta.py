"""The ``meta`` blueprint: ``GET /health`` and the API description at ``GET /openapi.json``."""

from typing import Any

from flask import Blueprint, current_app

from serving.extension import model_state
from serving.model_store import ModelUnavailable
from serving.openapi import build_openapi

bp = Blueprint("meta", __name__)


@bp.get("/health")
def health() -> tuple[dict[str, Any], int]:
    """Which model is served and since when; 503 when there is none."""
    state = model_state()
    if isinstance(state, ModelUnavailable):
        body = {
            "status": "unavailable",
            "error": f"no model available: {state.reason}",
            "model_uri": state.uri,
        }
        return body, 503
    return {
        "status": "ok",
        "model_name": state.name,
        "model_version": state.version,
        "run_id": state.run_id,
        "model_uri": state.uri,
        "loaded_at": state.loaded_at.isoformat(timespec="seconds"),
        "predictor": state.predictor.kind,
    }, 200


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.0 document of this API, with the limits this app was configured with."""
    return build_openapi(
        max_instances=current_app.config["MAX_INSTANCES"],
        max_body_bytes=current_app.config["MAX_CONTENT_LENGTH"],
    )
