"""The model watcher and the state file, in one process: what the watcher writes is what an app
following the file serves, and /health tells when updates go wrong."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask

from serving import create_app
from serving.model_store import UPDATES_KEY, UpdateStatus
from serving.schema import FEATURES
from serving.state_file import read_state
from serving.watcher import Watcher

from .conftest import CUBIC_NAME
from .helpers import expected_volumes, sample_rows
from .server import REPO, wait_for
from .synthetic import RegisteredModel

VOL, PRICE = FEATURES
URI = "models:/etf_volume_model@champion"


def _watcher(tmp_path: Path, tracking_uri: str, model_uri: str = URI) -> Watcher:
    return Watcher(tmp_path / "state.json", model_uri, tracking_uri, 5.0, FEATURES)


def _following(watcher: Watcher) -> Flask:
    return create_app({"TESTING": True, "MODEL_STATE_FILE": str(watcher.state_path)})


def test_app_serves_what_the_watcher_loaded(tmp_path: Path, registered: RegisteredModel) -> None:
    watcher = _watcher(tmp_path, registered.tracking_uri)
    watcher.check()
    client = _following(watcher).test_client()
    health = client.get("/health").json
    assert (health["status"], health["model_version"]) == ("ok", registered.version)
    assert (health["run_id"], health["predictor"]) == (registered.run_id, "closed-form")
    assert health["update_error"] is None
    rows = sample_rows(200)
    body = client.post("/predict", json={"instances": [{VOL: v, PRICE: p} for v, p in rows]}).json
    # The closed form's parameters go through JSON unchanged: the same answers, exactly.
    assert body["predictions"] == expected_volumes(registered.model, rows)
    assert body["model_version"] == registered.version


def test_model_without_closed_form_goes_through_the_state_file(
    tmp_path: Path, registered_cubic: RegisteredModel
) -> None:
    watcher = _watcher(tmp_path, registered_cubic.tracking_uri, f"models:/{CUBIC_NAME}@champion")
    watcher.check()
    assert read_state(watcher.state_path)["model"]["predictor"]["kind"] == "model-predict"
    client = _following(watcher).test_client()
    rows = [(12345.0, 25.0), (1e9, 30.0)]
    body = client.post("/predict", json={"instances": [{VOL: v, PRICE: p} for v, p in rows]}).json
    assert body["predictions"] == expected_volumes(registered_cubic.model, rows)


def test_no_state_yet_is_503_still_loading(tmp_path: Path) -> None:
    client = create_app({"MODEL_STATE_FILE": str(tmp_path / "state.json")}).test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert "still being loaded" in response.json["error"]
    assert client.get(f"/predict?{VOL}=1&{PRICE}=2").status_code == 503


def test_app_swaps_in_the_model_of_a_new_state(tmp_path: Path, registered: RegisteredModel) -> None:
    missing = _watcher(tmp_path, f"sqlite:///{tmp_path / 'nothing-yet.db'}")
    missing.check()
    client = _following(missing).test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert "MLflow store does not exist" in response.json["error"]

    # The same file, now written by a watcher that finds the model.
    _watcher(tmp_path, registered.tracking_uri).check()
    wait_for(lambda: client.get("/health").status_code == 200, 10, message="model swapped in")
    assert client.get("/health").json["model_version"] == registered.version


def test_check_failure_keeps_the_model_and_says_so(
    tmp_path: Path, registered: RegisteredModel
) -> None:
    watcher = _watcher(tmp_path, registered.tracking_uri)
    watcher.check()
    watcher.tracking_uri = f"sqlite:///{tmp_path / 'gone.db'}"  # the store disappears
    watcher.check()
    state = read_state(watcher.state_path)
    assert state["model"]["version"] == registered.version
    assert "MLflow store does not exist" in state["update_error"]
    health = _following(watcher).test_client().get("/health")
    assert health.status_code == 200
    assert health.json["status"] == "degraded"
    assert health.json["update_error"].endswith(f"; still serving version {registered.version}")


def test_a_silent_watcher_is_reported(tmp_path: Path, registered: RegisteredModel) -> None:
    watcher = _watcher(tmp_path, registered.tracking_uri)
    watcher.check()
    app = _following(watcher)
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    app.extensions[UPDATES_KEY] = UpdateStatus(long_ago, None, poll_seconds=5.0)
    health = app.test_client().get("/health").json
    assert health["status"] == "degraded"
    assert "the model watcher is stopped or stuck" in health["update_error"]


# Runs in a fresh interpreter: what a worker imports to answer from the state file.
_WORKER = """
import json, sys
import serving
app = serving.create_app({"MODEL_STATE_FILE": sys.argv[1]})
client = app.test_client()
statuses = [
    client.get("/health").status_code,
    client.get("/predict?vol_moving_avg=12345&adj_close_rolling_med=25").status_code,
    client.post("/predict", json={"instances": [{"vol_moving_avg": 1, "adj_close_rolling_med": 2}]})
    .status_code,
]
print(json.dumps({"modules": sorted(sys.modules), "statuses": statuses}))
"""


def test_a_worker_answers_without_mlflow_or_scikit_learn(
    tmp_path: Path, registered: RegisteredModel
) -> None:
    watcher = _watcher(tmp_path, registered.tracking_uri)
    watcher.check()
    result = subprocess.run(
        [sys.executable, "-c", _WORKER, str(watcher.state_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["statuses"] == [200, 200, 200]
    loaded = {name.partition(".")[0] for name in report["modules"]}
    assert not loaded & {"mlflow", "sklearn", "pandas", "scipy", "duckdb", "sqlalchemy"}
    assert not {name for name in loaded if name.startswith("dagster")}


@pytest.mark.parametrize("poll", [0, -1, "5", float("nan"), True])
def test_bad_poll_interval_fails_at_start(make_app, poll: object) -> None:
    with pytest.raises(ValueError, match="MODEL_POLL_SECONDS"):
        make_app(MODEL_POLL_SECONDS=poll)
