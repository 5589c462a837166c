"""The OpenAPI 3.0 document of the API, built from the same names and limits the code checks."""

from typing import Any

from serving.config import FEATURES, MAX_FEATURE_VALUE

_FEATURE_DOCS = {
    "vol_moving_avg": "Mean daily volume over the 30 most recent trading days (shares).",
    "adj_close_rolling_med": "Median adjusted close over the 30 most recent trading days.",
}


def _feature_schema(name: str) -> dict[str, Any]:
    return {
        "type": "number",
        "minimum": 0,
        "maximum": MAX_FEATURE_VALUE,
        "description": _FEATURE_DOCS.get(name, name),
    }


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def build_openapi(max_instances: int, max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI document for an app with these limits.

    Args:
        max_instances: Most instances accepted in one batch.
        max_body_bytes: Largest request body accepted.
    """
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
                        {
                            "name": name,
                            "in": "query",
                            "required": True,
                            "schema": _feature_schema(name),
                        }
                        for name in FEATURES
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
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Instance"},
                                        {"$ref": "#/components/schemas/Batch"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "A volume for an instance; predictions for a batch.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Volume"},
                                            {"$ref": "#/components/schemas/Predictions"},
                                        ]
                                    }
                                }
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
                "Instance": {
                    "type": "object",
                    "required": list(FEATURES),
                    "additionalProperties": False,
                    "properties": {name: _feature_schema(name) for name in FEATURES},
                },
                "Batch": {
                    "type": "object",
                    "required": ["instances"],
                    "additionalProperties": False,
                    "properties": {
                        "instances": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": max_instances,
                            "items": {"$ref": "#/components/schemas/Instance"},
                        }
                    },
                },
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
