"""Flask service answering trading-volume predictions from the registered MLflow model.

Production: ``gunicorn 'serving:create_app()'``; development: ``flask --app serving run``.
"""

from serving.app import create_app

__all__ = ["create_app"]
