"""/predict over HTTP (Flask test client): answers equal the model's own predict."""

import json

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from serving.schema import FEATURES

from .helpers import expected_volumes, model_predict, sample_rows
from .synthetic import RegisteredModel

VOL, PRICE = FEATURES


def _query(volume: float, price: float) -> str:
    return f"/predict?{VOL}={volume!r}&{PRICE}={price!r}"


def test_get_predict_the_problem_statements_example(
    client: FlaskClient, registered: RegisteredModel
) -> None:
    response = client.get(f"/predict?{VOL}=12345&{PRICE}=25")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    body = response.json
    assert body == {
        "volume": expected_volumes(registered.model, [(12345.0, 25.0)])[0],
        "model_version": registered.version,
    }
    assert type(body["volume"]) is int


@pytest.mark.parametrize("row", sample_rows(40, seed=5))
def test_get_predict_equals_model_predict(
    client: FlaskClient, registered: RegisteredModel, row: tuple[float, float]
) -> None:
    response = client.get(_query(*row))
    assert response.status_code == 200, response.json
    assert response.json["volume"] == expected_volumes(registered.model, [row])[0]


def test_big_volumes_are_served_exactly(client: FlaskClient, registered: RegisteredModel) -> None:
    rows = [(1e9, 25.0), (1e9, 3000.0), (2e9, 0.5), (123456789.0, 42.0)]
    got = [client.get(_query(*row)).json["volume"] for row in rows]
    assert got == expected_volumes(registered.model, rows)
    assert got[0] > 5e8


def test_query_values_in_other_number_spellings(client: FlaskClient) -> None:
    reference = client.get(f"/predict?{VOL}=1000000&{PRICE}=25").json
    for volume in ("1e6", "1E6", "+1000000", "1000000.0", "1000000."):
        assert (
            client.get(f"/predict?{VOL}={volume.replace('+', '%2B')}&{PRICE}=25").json == reference
        )


def test_post_single_instance_equals_get(client: FlaskClient, registered: RegisteredModel) -> None:
    for row in sample_rows(10, seed=6):
        response = client.post("/predict", json=dict(zip(FEATURES, row, strict=True)))
        assert response.status_code == 200
        assert response.json == client.get(_query(*row)).json
        assert response.json["volume"] == expected_volumes(registered.model, [row])[0]


def test_post_accepts_integers(client: FlaskClient, registered: RegisteredModel) -> None:
    response = client.post("/predict", json={VOL: 12345, PRICE: 25})
    assert response.json["volume"] == expected_volumes(registered.model, [(12345, 25)])[0]


def test_post_batch_of_10000_equals_model_predict(
    client: FlaskClient, registered: RegisteredModel
) -> None:
    rows = sample_rows(10_000 - 8, seed=7)
    assert len(rows) == 10_000
    instances = [{VOL: v, PRICE: p} for v, p in rows]
    response = client.post("/predict", json={"instances": instances})
    assert response.status_code == 200
    body = response.json
    assert body["model_version"] == registered.version
    assert body["predictions"] == expected_volumes(registered.model, rows)
    assert all(type(v) is int and v >= 0 for v in body["predictions"])


def test_batch_and_single_answers_agree(client: FlaskClient) -> None:
    rows = sample_rows(200, seed=8)
    batch = client.post("/predict", json={"instances": [{VOL: v, PRICE: p} for v, p in rows]}).json[
        "predictions"
    ]
    assert batch == [client.get(_query(*row)).json["volume"] for row in rows]


def test_negative_predictions_are_clipped_to_zero(
    client: FlaskClient, registered: RegisteredModel
) -> None:
    raw = model_predict(registered.model, [(0.0, 0.0)])[0]
    assert raw < 0  # the synthetic model undershoots at the origin
    assert client.get(_query(0.0, 0.0)).json["volume"] == 0


def test_head_predict_answers_like_get(client: FlaskClient) -> None:
    response = client.head(f"/predict?{VOL}=12345&{PRICE}=25")
    assert response.status_code == 200


def test_the_model_is_loaded_once_not_per_request(
    make_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.sklearn

    calls = []
    original = mlflow.sklearn.load_model
    monkeypatch.setattr(
        mlflow.sklearn, "load_model", lambda *a, **k: calls.append(a) or original(*a, **k)
    )
    app: Flask = make_app()
    client = app.test_client()
    for _ in range(5):
        assert client.get(f"/predict?{VOL}=12345&{PRICE}=25").status_code == 200
        assert client.post("/predict", json={VOL: 1.0, PRICE: 2.0}).status_code == 200
    assert len(calls) == 1


def test_large_batch_is_json_all_the_way(client: FlaskClient) -> None:
    raw = json.dumps({"instances": [{VOL: 1e6, PRICE: 20.0}] * 3}).encode()
    response = client.post("/predict", data=raw, content_type="application/json")
    assert response.status_code == 200
    assert len(np.unique(response.json["predictions"])) == 1
