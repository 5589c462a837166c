"""The ``predict`` blueprint: ``GET /predict`` (query string) and ``POST /predict`` (JSON)."""

from typing import Any

from flask import Blueprint, current_app, request

from serving.errors import APIError
from serving.model_store import LoadedModel, served_model
from serving.predictor import to_volume, to_volumes
from serving.schema import (
    is_batch,
    parse_json_body,
    row_from_instance,
    row_from_query,
    rows_from_batch,
)

bp = Blueprint("predict", __name__)

_NO_PREDICTION = "the model gives no finite prediction for these inputs"


@bp.get("/predict")
def predict_query() -> dict[str, Any]:
    """One prediction from ``?vol_moving_avg=..&adj_close_rolling_med=..``."""
    model = served_model()
    return _predict_one(model, row_from_query(request.query_string))


@bp.post("/predict")
def predict_body() -> dict[str, Any]:
    """One prediction from a JSON instance, or many from ``{"instances": [...]}``."""
    model = served_model()
    body = parse_json_body(request.get_data(cache=False))
    if is_batch(body):
        rows = rows_from_batch(body, current_app.config["MAX_INSTANCES"])
        volumes = to_volumes(model.predictor.predict_many(rows))
        if volumes is None:
            raise APIError(f"instances: {_NO_PREDICTION}")
        return {"predictions": volumes, "model_version": model.version}
    return _predict_one(model, row_from_instance(body))


def _predict_one(model: LoadedModel, row: tuple[float, ...]) -> dict[str, Any]:
    volume = to_volume(model.predictor.predict_one(row))
    if volume is None:
        raise APIError(_NO_PREDICTION)
    return {"volume": volume, "model_version": model.version}
