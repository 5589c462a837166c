"""Flask service answering trading-volume predictions from the registered MLflow model.

Production: ``gunicorn 'serving:create_app()'``; development: ``flask --app serving run``.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> "Flask":
    """Create the prediction app; see :func:`serving.app.create_app`.

    Imported on call, so that importing the package (its tests, :mod:`serving.synthetic`)
    does not load Flask, the pipeline's package or MLflow before the importer has configured
    the environment (``MLFLOW_*`` variables are read when MLflow is imported).
    """
    from serving.app import create_app as factory

    return factory(config)


__all__ = ["create_app"]
