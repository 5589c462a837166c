"""The baseline of the serving benchmark: a bare Flask app answering a constant JSON.

Served exactly like the real app (``gunicorn --config serving/gunicorn_conf.py
'benchmarks.bare_app:create_app()'``: the same workers, limits and deadlines), at the same path
and with a body of the same shape, so that the difference in throughput is what the predict
blueprint costs: validation, the model and the error handling around them.
"""

from flask import Flask

CONSTANT = {"volume": 10350, "model_version": "1"}


def create_app() -> Flask:
    """A Flask app whose ``GET /predict`` returns :data:`CONSTANT`."""
    app = Flask(__name__)

    @app.get("/predict")
    def constant() -> dict[str, object]:
        return CONSTANT

    return app
