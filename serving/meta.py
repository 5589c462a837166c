"""The ``meta`` blueprint: ``GET /health`` and the API description at ``GET /openapi.json``."""

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app

from serving.model_store import ModelUnavailable, UpdateStatus, model_state, update_status
from serving.schema import request_schemas

bp = Blueprint("meta", __name__)

#: A watcher silent for this many polls (and at least STALE_AFTER_MIN_S) is reported as stopped.
STALE_AFTER_POLLS = 3
STALE_AFTER_MIN_S = 30.0


@bp.get("/health")
def health() -> tuple[dict[str, Any], int]:
    """Which model is served and since when, and whether updates are picked up; 503 when no
    model is served. A new version that cannot be loaded leaves the old one served: 200, with
    ``"status": "degraded"`` and the reason in ``update_error``."""
    state = model_state()
    updates = update_status()
    checked_at = updates.checked_at.isoformat(timespec="seconds")
    if isinstance(state, ModelUnavailable):
        body = {
            "status": "unavailable",
            "error": f"no model available: {state.reason}",
            "model_uri": state.uri,
            "checked_at": checked_at,
        }
        return body, 503
    error = _update_error(updates)
    if error is not None:
        error = f"{error}; still serving version {state.version}"
    return {
        "status": "ok" if error is None else "degraded",
        "model_name": state.name,
        "model_version": state.version,
        "run_id": state.run_id,
        "model_uri": state.uri,
        "loaded_at": state.loaded_at.isoformat(timespec="seconds"),
        "predictor": state.predictor.kind,
        "checked_at": checked_at,
        "update_error": error,
    }, 200


def _update_error(updates: UpdateStatus) -> str | None:
    if updates.error is not None or updates.poll_seconds is None:
        return updates.error
    silent = (datetime.now(UTC) - updates.checked_at).total_seconds()
    if silent > max(STALE_AFTER_MIN_S, STALE_AFTER_POLLS * updates.poll_seconds):
        return (
            f"the registry has not been checked for {silent:.0f} s: the model watcher is "
            "stopped or stuck, and a new version would not be picked up"
        )
    return None


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.0 document of this API, with the limits this app was configured with."""
    return build_openapi(
        max_instances=current_app.config["MAX_INSTANCES"],
        max_body_bytes=current_app.config["MAX_CONTENT_LENGTH"],
    )


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def _one_of(*schema_refs: str) -> dict[str, Any]:
    return {"oneOf": [{"$ref": f"#/components/schemas/{ref}"} for ref in schema_refs]}


def build_openapi(max_instances: int, max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI document for an app with these limits.

    The request schemas are those that validate the requests (:mod:`serving.schema`); the
    responses, which the views build, are described here.

    Args:
        max_instances: Most instances accepted in one batch.
        max_body_bytes: Largest request body accepted.
    """
    requests = request_schemas(max_instances)
    instance = requests["Instance"]
    error_400 = _json("Error", "Invalid input; the message names the field and the problem.")
    error_503 = _json("Error", "No model is available (none was registered, or loading failed).")
    version = {"type": "string", "nullable": True, "description": "Registered model version."}
    checked_at = {
        "type": "string",
        "format": "date-time",
        "description": "When the registry was last checked for the version model_uri names.",
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "etf-pipeline volume prediction",
            "version": "1.0.0",
            "description": (
                "Predicts a day's trading volume from two 30-day features with the registered "
                "model `etf_volume_model@champion`. Volumes are integers: rounded, never "
                f"negative. Request bodies larger than {max_body_bytes} bytes are refused "
                "with 400."
            ),
        },
        "paths": {
            "/predict": {
                "get": {
                    "operationId": "predictFromQuery",
                    "summary": "Predict one volume from query parameters.",
                    "parameters": [
                        {"name": name, "in": "query", "required": True, "schema": schema}
                        for name, schema in instance["properties"].items()
                    ],
                    "responses": {
                        "200": _json("Volume", "The predicted volume."),
                        "400": error_400,
                        "503": error_503,
                    },
                },
                "post": {
                    "operationId": "predictFromBody",
                    "summary": "Predict one volume, or a batch of volumes, from a JSON body.",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _one_of("Instance", "Batch")}},
                    },
                    "responses": {
                        "200": {
                            "description": "A volume for an instance; predictions for a batch.",
                            "content": {
                                "application/json": {"schema": _one_of("Volume", "Predictions")}
                            },
                        },
                        "400": error_400,
                        "503": error_503,
                    },
                },
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "The served model and when it was loaded.",
                    "responses": {
                        "200": _json("Health", "A model is served."),
                        "503": _json("Unavailable", "No model is served."),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                **requests,
                "Volume": {
                    "type": "object",
                    "required": ["volume", "model_version"],
                    "properties": {
                        "volume": {"type": "integer", "minimum": 0},
                        "model_version": version,
                    },
                },
                "Predictions": {
                    "type": "object",
                    "required": ["predictions", "model_version"],
                    "properties": {
                        "predictions": {
                            "type": "array",
                            "items": {"type": "integer", "minimum": 0},
                        },
                        "model_version": version,
                    },
                },
                "Health": {
                    "type": "object",
                    "required": [
                        "status",
                        "model_version",
                        "model_uri",
                        "loaded_at",
                        "predictor",
                        "checked_at",
                        "update_error",
                    ],
                    "properties": {
                        "status": {
                            "type": "string",
                            "enum": ["ok", "degraded"],
                            "description": (
                                "degraded: the model served is not (or may not be) the one "
                                "model_uri names now; update_error says why."
                            ),
                        },
                        "model_name": {"type": "string", "nullable": True},
                        "model_version": version,
                        "run_id": {"type": "string", "nullable": True},
                        "model_uri": {"type": "string"},
                        "loaded_at": {"type": "string", "format": "date-time"},
                        "predictor": {"type": "string", "enum": ["closed-form", "model-predict"]},
                        "checked_at": checked_at,
                        "update_error": {
                            "type": "string",
                            "nullable": True,
                            "description": (
                                "Why a new version of model_uri is not served (it could not be "
                                "loaded, or the registry could not be checked); null if none."
                            ),
                        },
                    },
                },
                "Unavailable": {
                    "type": "object",
                    "required": ["status", "error", "model_uri", "checked_at"],
                    "properties": {
                        "status": {"type": "string", "enum": ["unavailable"]},
                        "error": {"type": "string"},
                        "model_uri": {"type": "string"},
                        "checked_at": checked_at,
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
            }
        },
    }
