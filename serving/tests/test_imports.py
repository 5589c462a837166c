"""The serving app stays off the orchestrator and the warehouse: no Dagster, no DuckDB."""

import json
import os
import subprocess
import sys
from pathlib import Path

from .synthetic import RegisteredModel

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter, where nothing the test session imported can hide an import.
_SERVE_ONCE = """
import json, sys
import serving
imported_by_package = sorted(sys.modules)
app = serving.create_app({"MLFLOW_TRACKING_URI": sys.argv[1]})
client = app.test_client()
statuses = [
    client.get("/health").status_code,
    client.get("/predict?vol_moving_avg=12345&adj_close_rolling_med=25").status_code,
    client.post("/predict", json={"instances": [{"vol_moving_avg": 1, "adj_close_rolling_med": 2}]})
    .status_code,
    client.get("/openapi.json").status_code,
]
report = {"package": imported_by_package, "all": sorted(sys.modules), "statuses": statuses}
print(json.dumps(report))
"""


def _top_level(modules: list[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_serving_imports_neither_dagster_nor_duckdb(registered: RegisteredModel) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SERVE_ONCE, registered.tracking_uri],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["statuses"] == [200, 200, 200, 200]
    loaded = _top_level(report["all"])
    assert not {name for name in loaded if name.startswith("dagster")}
    assert not loaded & {"duckdb", "_duckdb"}
    # MLflow reads its MLFLOW_* variables when imported: importing the package must not import
    # it, so that a caller (the tests, a benchmark) can set them first.
    assert "mlflow" not in _top_level(report["package"])
