"""The ``meta`` blueprint: ``GET /health`` and the API description at ``GET /openapi.json``."""

from typing import Any

from flask import Blueprint, current_app

from serving.model_store import ModelUnavailable, model_state
from serving.schema import request_schemas

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
                    "required": ["status", "model_uri", "loaded_at", "predictor"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok"]},
                        "model_name": {"type": "string", "nullable": True},
                        "model_version": version,
                        "run_id": {"type": "string", "nullable": True},
                        "model_uri": {"type": "string"},
                        "loaded_at": {"type": "string", "format": "date-time"},
                        "predictor": {"type": "string", "enum": ["closed-form", "model-predict"]},
                    },
                },
                "Unavailable": {
                    "type": "object",
                    "required": ["status", "error", "model_uri"],
                    "properties": {
                        "status": {"type": "string", "enum": ["unavailable"]},
                        "error": {"type": "string"},
                        "model_uri": {"type": "string"},
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
