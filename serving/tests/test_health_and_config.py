"""/health, the 503s when no model can be served, configuration and the no-debug rule."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask.cli import ScriptInfo
from flask.testing import FlaskClient
from mlflow import MlflowClient

from serving import create_app
from serving.model_store import EXTENSION_KEY
from serving.schema import FEATURES

from .conftest import CUBIC_NAME
from .helpers import expected_volumes
from .synthetic import RegisteredModel, register_model, synthetic_features

VOL, PRICE = FEATURES
QUERY = f"/predict?{VOL}=12345&{PRICE}=25"


def test_health_names_the_served_model(client: FlaskClient, registered: RegisteredModel) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok"
    assert body["model_name"] == "etf_volume_model"
    assert body["model_version"] == registered.version
    assert body["run_id"] == registered.run_id
    assert body["model_uri"] == "models:/etf_volume_model@champion"
    assert body["predictor"] == "closed-form"
    loaded_at = datetime.fromisoformat(body["loaded_at"])
    assert timedelta(0) <= datetime.now(UTC) - loaded_at < timedelta(hours=1)


def _assert_unavailable(client: FlaskClient, *fragments: str) -> None:
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json["status"] == "unavailable"
    predict = client.get(QUERY)
    assert predict.status_code == 503
    assert list(predict.json) == ["error"]
    posted = client.post("/predict", json={VOL: 1, PRICE: 2})
    assert posted.status_code == 503
    for body in (health.json, predict.json, posted.json):
        assert body["error"].startswith("no model available")
        for fragment in fragments:
            assert fragment in body["error"]
        assert "Traceback" not in body["error"]


def test_no_store_yet_is_503(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"
    client = create_app({"MLFLOW_TRACKING_URI": uri}).test_client()
    _assert_unavailable(client, "MLflow store does not exist", "make run")
    assert not (tmp_path / "missing").exists()  # nothing created as a side effect


def test_store_without_the_registered_model_is_503(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates an empty store
    client = create_app({"MLFLOW_TRACKING_URI": uri}).test_client()
    _assert_unavailable(client, "models:/etf_volume_model@champion", "not in the MLflow")


def test_missing_alias_is_503(make_app) -> None:
    client = make_app(MODEL_URI="models:/etf_volume_model@challenger").test_client()
    _assert_unavailable(client, "models:/etf_volume_model@challenger")


def test_missing_version_is_503(make_app) -> None:
    _assert_unavailable(make_app(MODEL_URI="models:/etf_volume_model/999").test_client(), "999")


def test_unexpected_load_failure_is_503_without_details(
    make_app, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app(MODEL_URI="runs:/0123456789abcdef/model").test_client()
    _assert_unavailable(client, "runs:/0123456789abcdef/model could not be loaded")
    assert "see the server log" in client.get("/health").json["error"]
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)


def test_model_on_other_features_is_503(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    features = synthetic_features(50).rename(columns={VOL: "volume_avg"})
    model = LinearRegression().fit(features, features["volume_avg"])
    other = register_model(tmp_path, model)
    client = create_app({"MLFLOW_TRACKING_URI": other.tracking_uri}).test_client()
    _assert_unavailable(client, "volume_avg")


def test_pinned_version_is_served(make_app, registered: RegisteredModel) -> None:
    client = make_app(MODEL_URI=f"models:/etf_volume_model/{registered.version}").test_client()
    assert client.get("/health").json["model_version"] == registered.version
    assert client.get(QUERY).json["volume"] == expected_volumes(registered.model, [(12345, 25)])[0]


def test_model_without_closed_form_is_served_by_its_predict(
    make_app, registered_cubic: RegisteredModel
) -> None:
    client = make_app(MODEL_URI=f"models:/{CUBIC_NAME}@champion").test_client()
    health = client.get("/health").json
    assert health["predictor"] == "model-predict"
    assert health["model_name"] == CUBIC_NAME
    rows = [(12345.0, 25.0), (1e9, 30.0), (5e6, 100.0)]
    got = [client.get(f"/predict?{VOL}={v}&{PRICE}={p}").json["volume"] for v, p in rows]
    assert got == expected_volumes(registered_cubic.model, rows)
    batch = client.post("/predict", json={"instances": [{VOL: v, PRICE: p} for v, p in rows]})
    assert batch.json["predictions"] == got


def test_internal_error_is_json_500_without_trace(make_app) -> None:
    app = make_app()

    class Broken:
        kind = "broken"

        def predict_one(self, row):
            raise RuntimeError("secret internals")

        predict_many = predict_one

    loaded = app.extensions[EXTENSION_KEY]
    app.extensions[EXTENSION_KEY] = type(loaded)(**{**vars(loaded), "predictor": Broken()})
    response = app.test_client().get(QUERY)
    assert response.status_code == 500
    assert response.json == {"error": "internal server error"}


def test_flask_env_config_and_mlflow_env(
    monkeypatch: pytest.MonkeyPatch, registered: RegisteredModel
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.tracking_uri)
    monkeypatch.setenv("FLASK_MODEL_URI", f"models:/etf_volume_model/{registered.version}")
    monkeypatch.setenv("FLASK_MAX_INSTANCES", "7")
    app = create_app()
    assert app.config["MAX_INSTANCES"] == 7
    assert app.test_client().get("/health").json["model_uri"].endswith(f"/{registered.version}")


def test_test_config_overrides_environment(
    monkeypatch: pytest.MonkeyPatch, registered: RegisteredModel
) -> None:
    monkeypatch.setenv("FLASK_MAX_INSTANCES", "7")
    app = create_app({"MLFLOW_TRACKING_URI": registered.tracking_uri, "MAX_INSTANCES": 9})
    assert app.config["MAX_INSTANCES"] == 9


def test_never_debug_outside_flask_run(
    monkeypatch: pytest.MonkeyPatch, registered: RegisteredModel
) -> None:
    monkeypatch.setenv("FLASK_DEBUG", "1")
    config = {"MLFLOW_TRACKING_URI": registered.tracking_uri, "DEBUG": True}
    assert create_app(config).debug is False
    # `flask run --debug` sets FLASK_DEBUG=1 and then the flag, after the factory returns.
    script = ScriptInfo(create_app=lambda: create_app(config), set_debug_flag=True)
    assert script.load_app().debug is True


def test_store_is_config_then_environment_then_data_dir(
    monkeypatch: pytest.MonkeyPatch, registered: RegisteredModel, tmp_path: Path
) -> None:
    store_dir = Path(registered.tracking_uri.removeprefix("sqlite:///")).parent
    missing = f"sqlite:///{tmp_path / 'missing.db'}"

    def health(config: dict | None = None) -> int:
        return create_app(config).test_client().get("/health").status_code

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("ETF_DATA_DIR", str(store_dir))
    assert health() == 200  # sqlite:///$ETF_DATA_DIR/mlflow.db
    monkeypatch.setenv("MLFLOW_TRACKING_URI", missing)
    assert health() == 503  # $MLFLOW_TRACKING_URI before the data folder
    assert health({"MLFLOW_TRACKING_URI": registered.tracking_uri}) == 200  # config first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.tracking_uri)
    assert health({"MLFLOW_TRACKING_URI": missing}) == 503


@pytest.mark.parametrize(
    ("key", "value"),
    [("MAX_INSTANCES", "many"), ("MAX_INSTANCES", 0), ("MAX_CONTENT_LENGTH", None)],
)
def test_bad_limits_fail_at_start(make_app, key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        make_app(**{key: value})
