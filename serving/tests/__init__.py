"""Tests of the serving app. MLflow telemetry is off: the tests may only reach 127.0.0.1."""

import os

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
