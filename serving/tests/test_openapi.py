"""The OpenAPI document is served, matches the code, and fuzzing the API against it finds no 5xx."""

import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from pydantic import TypeAdapter
from schemathesis.generation import GenerationMode

from serving.app import DEFAULTS
from serving.meta import build_openapi
from serving.schema import FEATURES, MAX_FEATURE_VALUE, Instance, batch_adapter

VOL, PRICE = FEATURES


def test_openapi_document_is_served_with_the_configured_limits(make_app) -> None:
    app: Flask = make_app(MAX_INSTANCES=123, MAX_CONTENT_LENGTH=4567)
    doc = app.test_client().get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/predict", "/health", "/openapi.json"}
    assert set(doc["paths"]["/predict"]) == {"get", "post"}
    batch = doc["components"]["schemas"]["Batch"]["properties"]["instances"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 123)
    assert "4567 bytes" in doc["info"]["description"]
    instance = doc["components"]["schemas"]["Instance"]
    assert instance["required"] == list(FEATURES)
    assert instance["properties"][VOL]["maximum"] == MAX_FEATURE_VALUE


def test_documented_requests_are_the_validators_schemas(make_app) -> None:
    doc = make_app(MAX_INSTANCES=123).test_client().get("/openapi.json").json
    schemas = doc["components"]["schemas"]
    ref_template = "#/components/schemas/{model}"
    assert schemas["Instance"] == TypeAdapter(Instance).json_schema(ref_template=ref_template)
    batch = batch_adapter(123).json_schema(ref_template=ref_template)
    assert schemas["Batch"] == {key: value for key, value in batch.items() if key != "$defs"}
    parameters = doc["paths"]["/predict"]["get"]["parameters"]
    assert {p["name"]: p["schema"] for p in parameters} == schemas["Instance"]["properties"]
    assert [p["name"] for p in parameters] == list(FEATURES)


def test_every_route_is_documented(app: Flask) -> None:
    documented = set(app.test_client().get("/openapi.json").json["paths"])
    routed = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routed == documented


def test_documented_edges_are_accepted(client: FlaskClient) -> None:
    # The schema's bounds are inclusive: 0 and the maximum must be answered 200.
    for value in (0, MAX_FEATURE_VALUE):
        assert client.get(f"/predict?{VOL}={value}&{PRICE}={value}").status_code == 200
        assert client.post("/predict", json={VOL: value, PRICE: value}).status_code == 200


# Built from the same function and defaults as the served document (checked above), so that
# the operations are known at collection time; the calls go to the ``app`` fixture over WSGI.
schema = schemathesis.openapi.from_dict(
    build_openapi(
        max_instances=DEFAULTS["MAX_INSTANCES"], max_body_bytes=DEFAULTS["MAX_CONTENT_LENGTH"]
    )
)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


def test_fuzzed_document_is_the_served_one(client: FlaskClient) -> None:
    assert client.get("/openapi.json").json == schema.raw_schema


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)
def test_api_conforms_to_its_openapi_document(case, app: Flask) -> None:
    """Valid input answers 200, invalid input 4xx, all as documented; never a 5xx."""
    case.call_and_validate(app=app)
