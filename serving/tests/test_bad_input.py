"""Every bad input is a 400 JSON naming the field and the problem; 404 and 405 are JSON too."""

import pytest
from flask import Flask
from flask.testing import FlaskClient

from serving.schema import FEATURES

VOL, PRICE = FEATURES
GOOD = {VOL: 12345.0, PRICE: 25.0}


def _assert_error(response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/json"
    body = response.json
    assert list(body) == ["error"]
    for fragment in fragments:
        assert fragment in body["error"]
    assert "Traceback" not in body["error"]
    return body["error"]


@pytest.mark.parametrize(
    ("query", "fragments"),
    [
        (f"{PRICE}=25", (VOL, "missing")),
        (f"{VOL}=12345", (PRICE, "missing")),
        ("", (VOL, "missing")),
        (f"{VOL}=&{PRICE}=25", (VOL, "empty")),
        (f"{VOL}=12345&{PRICE}=", (PRICE, "empty")),
        (f"{VOL}=%20&{PRICE}=25", (VOL, "empty")),
        (f"{VOL}=abc&{PRICE}=25", (VOL, "not a number", "abc")),
        (f"{VOL}=12,345&{PRICE}=25", (VOL, "not a number")),
        (f"{VOL}=1_000&{PRICE}=25", (VOL, "not a number")),
        (f"{VOL}=0x10&{PRICE}=25", (VOL, "not a number")),
        (f"{VOL}=12345&{PRICE}=25USD", (PRICE, "not a number")),
        (f"{VOL}=nan&{PRICE}=25", (VOL, "NaN")),
        (f"{VOL}=12345&{PRICE}=NaN", (PRICE, "NaN")),
        (f"{VOL}=inf&{PRICE}=25", (VOL, "finite")),
        (f"{VOL}=12345&{PRICE}=-Infinity", (PRICE, "finite")),
        (f"{VOL}=1e400&{PRICE}=25", (VOL, "finite")),
        (f"{VOL}=-1&{PRICE}=25", (VOL, "negative")),
        (f"{VOL}=12345&{PRICE}=-0.01", (PRICE, "negative")),
        (f"{VOL}=1e16&{PRICE}=25", (VOL, "at most")),
        (f"{VOL}=1&{VOL}=2&{PRICE}=25", (VOL, "2 times")),
        (f"{VOL}=1&{PRICE}=25&volume=3", ("volume", "unknown field")),
    ],
)
def test_get_bad_query(client: FlaskClient, query: str, fragments: tuple[str, ...]) -> None:
    _assert_error(client.get(f"/predict?{query}"), 400, *fragments)


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("", ("body", "empty")),
        ("   ", ("body", "empty")),
        ("{", ("body", "not valid JSON")),
        ("vol_moving_avg=1&adj_close_rolling_med=2", ("body", "not valid JSON")),
        ('{"vol_moving_avg": 1,}', ("body", "not valid JSON")),
        (b"\xff\xfe\x00garbage", ("body", "not valid JSON")),
        ("[" * 100_000 + "]" * 100_000, ("body", "not valid JSON")),
        ("[1, 2]", ("body", "expected an object", "an array")),
        ('"text"', ("body", "expected an object", "a string")),
        ("12345", ("body", "expected an object", "a number")),
        ("null", ("body", "expected an object", "null")),
        ("{}", (VOL, "missing")),
        ('{"vol_moving_avg": 1}', (PRICE, "missing")),
        ('{"vol_moving_avg": "12345", "adj_close_rolling_med": 25}', (VOL, "a string")),
        ('{"vol_moving_avg": null, "adj_close_rolling_med": 25}', (VOL, "null")),
        ('{"vol_moving_avg": true, "adj_close_rolling_med": 25}', (VOL, "a boolean")),
        ('{"vol_moving_avg": [1], "adj_close_rolling_med": 25}', (VOL, "an array")),
        ('{"vol_moving_avg": 1, "adj_close_rolling_med": {"x": 1}}', (PRICE, "an object")),
        ('{"vol_moving_avg": NaN, "adj_close_rolling_med": 25}', (VOL, "NaN")),
        ('{"vol_moving_avg": Infinity, "adj_close_rolling_med": 25}', (VOL, "finite")),
        ('{"vol_moving_avg": 1, "adj_close_rolling_med": -Infinity}', (PRICE, "finite")),
        ('{"vol_moving_avg": 1e999, "adj_close_rolling_med": 25}', (VOL, "finite")),
        ('{"vol_moving_avg": -5, "adj_close_rolling_med": 25}', (VOL, "negative")),
        ('{"vol_moving_avg": 5, "adj_close_rolling_med": -0.5}', (PRICE, "negative")),
        ('{"vol_moving_avg": 1e16, "adj_close_rolling_med": 25}', (VOL, "at most")),
        ('{"vol_moving_avg": 1' + "0" * 400 + ', "adj_close_rolling_med": 2}', (VOL, "at most")),
        ('{"vol_moving_avg": 1, "adj_close_rolling_med": 2, "extra": 3}', ("extra", "unknown")),
    ],
)
def test_post_bad_single(
    client: FlaskClient, body: str | bytes, fragments: tuple[str, ...]
) -> None:
    response = client.post("/predict", data=body, content_type="application/json")
    _assert_error(response, 400, *fragments)


def _instances(*items: object) -> dict:
    return {"instances": list(items)}


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({"instances": None}, ("instances", "expected an array", "null")),
        ({"instances": {"a": 1}}, ("instances", "expected an array", "an object")),
        ({"instances": "x"}, ("instances", "expected an array", "a string")),
        ({"instances": []}, ("instances", "empty")),
        (_instances(GOOD, 5), ("instances[1]", "expected an object", "a number")),
        (_instances(GOOD, [1, 2]), ("instances[1]", "an array")),
        (_instances(GOOD, None), ("instances[1]", "null")),
        (_instances(GOOD, GOOD, {VOL: 1}), (f"instances[2].{PRICE}", "missing")),
        (_instances({**GOOD, "x": 1}), ("instances[0].x", "unknown field")),
        (_instances(GOOD, {VOL: "1", PRICE: 2}), (f"instances[1].{VOL}", "a string")),
        (_instances(GOOD, {VOL: 1, PRICE: True}), (f"instances[1].{PRICE}", "a boolean")),
        (_instances(GOOD, {VOL: 1, PRICE: None}), (f"instances[1].{PRICE}", "null")),
        (_instances(GOOD, GOOD, {VOL: -1, PRICE: 2}), (f"instances[2].{VOL}", "negative")),
        (_instances({VOL: 1, PRICE: 1e16}), (f"instances[0].{PRICE}", "at most")),
        ({"instances": [GOOD], **GOOD}, (VOL, "unknown field", "only instances")),
    ],
)
def test_post_bad_batch(client: FlaskClient, body: dict, fragments: tuple[str, ...]) -> None:
    _assert_error(client.post("/predict", json=body), 400, *fragments)


@pytest.mark.parametrize(
    ("literal", "fragment"),
    [("NaN", "NaN"), ("Infinity", "finite"), ("-Infinity", "finite"), ("1e999", "finite")],
)
def test_post_batch_non_finite_names_the_instance(
    client: FlaskClient, literal: str, fragment: str
) -> None:
    good = f'{{"{VOL}": 1, "{PRICE}": 2}}'
    body = f'{{"instances": [{good}, {good}, {{"{VOL}": 1, "{PRICE}": {literal}}}]}}'
    response = client.post("/predict", data=body, content_type="application/json")
    _assert_error(response, 400, f"instances[2].{PRICE}", fragment)


def test_post_batch_huge_integer_names_the_instance(client: FlaskClient) -> None:
    body = (
        f'{{"instances": [{{"{VOL}": 1, "{PRICE}": 2}}, {{"{VOL}": 1{"0" * 400}, "{PRICE}": 2}}]}}'
    )
    response = client.post("/predict", data=body, content_type="application/json")
    _assert_error(response, 400, f"instances[1].{VOL}", "at most")


def test_too_many_instances(client: FlaskClient) -> None:
    response = client.post("/predict", json={"instances": [GOOD] * 10_001})
    _assert_error(response, 400, "instances", "too many", "10001", "10000")


def test_instance_limit_follows_config(make_app) -> None:
    client = make_app(MAX_INSTANCES=3).test_client()
    assert client.post("/predict", json={"instances": [GOOD] * 3}).status_code == 200
    _assert_error(client.post("/predict", json={"instances": [GOOD] * 4}), 400, "at most 3")


def test_body_over_the_size_limit(client: FlaskClient, app: Flask) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = '{"instances": [' + " " * limit + "]}"
    response = client.post("/predict", data=body, content_type="application/json")
    _assert_error(response, 400, "body", "larger than", str(limit))


def test_body_within_the_limit_with_10000_verbose_instances_is_accepted(
    client: FlaskClient, app: Flask
) -> None:
    import json

    instance = {VOL: 1234567890.1234567, PRICE: 1234.5678901234567}
    raw = json.dumps({"instances": [instance] * 10_000}, indent=2)
    assert len(raw) < app.config["MAX_CONTENT_LENGTH"]
    response = client.post("/predict", data=raw, content_type="application/json")
    assert response.status_code == 200


def test_post_without_json_content_type_is_still_parsed(client: FlaskClient) -> None:
    response = client.post("/predict", data='{"vol_moving_avg": 1, "adj_close_rolling_med": 2}')
    assert response.status_code == 200


def test_unknown_path_is_json_404(client: FlaskClient) -> None:
    _assert_error(client.get("/nope"), 404, "/nope")
    _assert_error(client.post("/predict/extra"), 404)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_wrong_method_is_json_405(client: FlaskClient, method: str) -> None:
    response = client.open("/predict", method=method)
    error = _assert_error(response, 405, method, "/predict", "GET", "POST")
    assert "POST" in response.headers["Allow"]
    assert error


def test_post_on_health_is_json_405(client: FlaskClient) -> None:
    _assert_error(client.post("/health"), 405, "POST", "/health")


@pytest.mark.parametrize(
    ("query", "fragments"),
    [
        (f"{VOL}=+&{PRICE}=25", (VOL, "empty")),  # + is a space in a query string
        (f"vol%C3%A9=1&{PRICE}=25", ("volé", "unknown field")),
        (f"{VOL}=1%2C5&{PRICE}=25", (VOL, "not a number", "1,5")),
        (f"{VOL}&{PRICE}=25", (VOL, "empty")),
        (f"&&{VOL}=1&&{PRICE}=%FF", (PRICE, "not a number")),
    ],
)
def test_get_query_string_decoding(client: FlaskClient, query: str, fragments: tuple) -> None:
    _assert_error(client.get(f"/predict?{query}"), 400, *fragments)


def test_get_query_string_percent_encoded_names_and_values(client: FlaskClient) -> None:
    plain = client.get(f"/predict?{VOL}=1500000&{PRICE}=25").json
    encoded = client.get("/predict?vol%5Fmoving%5Favg=1%35%30%30%30%30%30&adj_close_rolling_med=25")
    assert encoded.json == plain
