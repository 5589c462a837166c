"""The real server: gunicorn as `make serve` runs it, on a free loopback port, queried over HTTP."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.schema import FEATURES

from .helpers import expected_volumes
from .synthetic import RegisteredModel

VOL, PRICE = FEATURES
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0


def _request(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


@pytest.fixture(scope="module")
def server(registered: RegisteredModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gunicorn --workers 2 'serving:create_app()' on 127.0.0.1 and a port the OS picks."""
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registered.tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", "127.0.0.1:0",
        "--graceful-timeout", "5", "--no-control-socket", "serving:create_app()",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        base = _wait_until_ready(process, log_path)
        yield base
    finally:
        process.send_signal(signal.SIGINT)  # quick shutdown
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_until_ready(process: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    base = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()}")
        if base is None:
            found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log_path.read_text())
            base = found and found.group(1)
        if base is not None:
            try:
                status, _ = _request(f"{base}/health")
            except OSError:
                status = None
            if status == 200:
                return base
        time.sleep(0.25)
    pytest.fail(f"gunicorn not ready after {START_TIMEOUT}s:\n{log_path.read_text()}")


def test_gunicorn_serves_health_and_predictions(server: str, registered: RegisteredModel) -> None:
    status, health = _request(f"{server}/health")
    assert status == 200
    assert (health["model_version"], health["run_id"]) == (registered.version, registered.run_id)

    status, body = _request(f"{server}/predict?{VOL}=12345&{PRICE}=25")
    assert status == 200
    assert body["volume"] == expected_volumes(registered.model, [(12345, 25)])[0]

    rows = [(1e9, 25.0), (5e5, 12.5), (0.0, 0.0)]
    status, body = _request(
        f"{server}/predict", {"instances": [{VOL: v, PRICE: p} for v, p in rows]}
    )
    assert status == 200
    assert body["predictions"] == expected_volumes(registered.model, rows)


def test_gunicorn_answers_errors_in_json(server: str) -> None:
    status, body = _request(f"{server}/predict?{VOL}=abc&{PRICE}=25")
    assert (status, body) == (400, {"error": "vol_moving_avg: not a number: 'abc'"})
    status, body = _request(f"{server}/predict", {"instances": []})
    assert status == 400 and "instances" in body["error"]
    status, body = _request(f"{server}/nope")
    assert status == 404 and body["error"] == "no such path: /nope"
