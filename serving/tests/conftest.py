"""Fixtures: a real MLflow store in a temporary folder with a registered model, and the app."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from etf_assets.model.pipeline import make_pipeline
from serving import create_app
from serving.schema import FEATURES

from .server import Server, running_server
from .synthetic import RegisteredModel, register_model, synthetic_features

CUBIC_NAME = "etf_volume_model_cubic"


@pytest.fixture(scope="session")
def registered(tmp_path_factory: pytest.TempPathFactory) -> RegisteredModel:
    """The asset-shaped model, registered as etf_volume_model@champion in a temporary store."""
    return register_model(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="session")
def registered_cubic(registered: RegisteredModel) -> RegisteredModel:
    """A model without the closed form (degree 3), in the same store under another name."""
    cubic = make_pipeline(degree=3)
    features = synthetic_features(500, seed=3)
    cubic.fit(features, features[FEATURES[0]] * 1.1 + 7.0)
    store_dir = Path(registered.tracking_uri.removeprefix("sqlite:///")).parent
    return register_model(store_dir, cubic, name=CUBIC_NAME)


@pytest.fixture(scope="session")
def make_app(registered: RegisteredModel) -> Callable[..., Flask]:
    """Build an app on the temporary store, with config overrides."""

    def make(**overrides: Any) -> Flask:
        return create_app(
            {"TESTING": True, "MLFLOW_TRACKING_URI": registered.tracking_uri, **overrides}
        )

    return make


@pytest.fixture(scope="session")
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app serving models:/etf_volume_model@champion from the temporary store."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    """A test client of :func:`app`."""
    yield app.test_client()


@pytest.fixture(scope="session")
def gunicorn_server(
    registered: RegisteredModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``make serve``'s gunicorn on 127.0.0.1 and a free port, serving :func:`registered`."""
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with running_server({"MLFLOW_TRACKING_URI": registered.tracking_uri}, log_path) as server:
        yield server
